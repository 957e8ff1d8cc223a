"""One long-lived verifier process per master: spot-check recomputation never runs on the event loop.

Modelled on evaluator.py: a spawned single-process pool at lower priority
that exits with the master, replaced once if it dies. The queue is bounded:
when `settings.queue` checks are already waiting or running, a new one is
dropped (counted in `dropped`) rather than letting checks pile up behind a
slow verifier: sampling, not completeness, is what makes cheating a losing bet.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.connection import wait

from mlitb.master.verification import Claim, Verdict, VerifySettings, Work, verify

log = logging.getLogger("mlitb.master.verifier")


def _start_process(niceness: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(niceness)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    wait([sentinel])
    os._exit(0)


@dataclass
class VerifierStats:
    """For the API and Prometheus."""

    checked: int = 0
    passed: int = 0
    failed: int = 0
    dropped: int = 0


class Verifier:
    """The master's handle on the verifier process (started at the first check)."""

    def __init__(self, settings: VerifySettings = VerifySettings()) -> None:
        self.settings = settings
        self.stats = VerifierStats()
        self._pool: ProcessPoolExecutor | None = None
        self._in_flight = 0

    @property
    def busy(self) -> bool:
        """True when a new check would be dropped."""
        return self._in_flight >= self.settings.queue

    async def verify(self, work: Work, claim: Claim) -> Verdict | None:
        """The verdict on one result, or None when the queue was full and the check was dropped."""
        if self.busy:
            self.stats.dropped += 1
            return None
        self._in_flight += 1
        try:
            for attempt in (1, 2):
                pool = self._executor()
                try:
                    verdict = await asyncio.wrap_future(pool.submit(verify, work, claim, self.settings))
                    break
                except BrokenProcessPool:
                    self._replace(pool)
                    if attempt == 2:
                        raise
        finally:
            self._in_flight -= 1
        self.stats.checked += 1
        if verdict.passed:
            self.stats.passed += 1
        else:
            self.stats.failed += 1
        return verdict

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_process, initargs=(self.settings.niceness,))
        return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:
            log.warning("the verifier process died; starting a new one")
            self._pool = None
            broken.shutdown(wait=False, cancel_futures=True)
