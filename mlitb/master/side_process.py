"""A process beside the master for CPU-bound work: test evaluation, spot checks, fallback predictions.

Work in a thread of the master shares its GIL and, on a small machine, its
cores: a result that reached the socket before the deadline could be read
after it and dropped as late (bench/eval_lateness.py). So each kind of heavy
work gets one spawned process, started at the first call, at a lower priority,
ignoring Ctrl-C (the master stops it at shutdown), exiting by itself if the
master dies without stopping it; if it dies, the next call starts a new one
and the call is tried once more.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait
from typing import Any

from mlitb.model.memory import retain_freed_memory

log = logging.getLogger("mlitb.master.side_process")


def _start_process(niceness: int) -> None:
    """Initializer: yield the CPU to the master's loop and workers, keep freed memory for the next call (this
    process runs the engine), and never outlive the master."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(niceness)
    retain_freed_memory()
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    wait([sentinel])
    os._exit(0)


def _pid() -> int:
    return os.getpid()


class SideProcess:
    """The master's handle on one such process; `name` is for the log when it has to be replaced."""

    def __init__(self, name: str, niceness: int = 5) -> None:
        self.name = name
        self.niceness = niceness
        self._pool: ProcessPoolExecutor | None = None

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in the process (a module-level function), once more in a new process if it died."""
        for attempt in (1, 2):
            pool = self._executor()
            try:
                return await asyncio.wrap_future(pool.submit(fn, *args))
            except BrokenProcessPool:
                self._replace(pool)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Fire and forget (a cache to drop, the process to start early); nothing if it is gone."""
        try:
            self._executor().submit(fn, *args)
        except (BrokenProcessPool, RuntimeError):
            pass

    def start(self) -> None:
        """Start the process now (idempotent): its start-up (Python and numpy, at normal priority until the
        initializer runs) is a second of CPU that must not land in the middle of a project's iteration."""
        if self._pool is None:
            self.submit(_pid)

    @property
    def started(self) -> bool:
        return self._pool is not None

    async def pid(self) -> int:
        """The process's id (starting it if needed): for operators and the restart tests."""
        return await self.call(_pid)

    async def close(self) -> None:
        """Stop the process; a call in progress finishes first, queued ones are cancelled."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_process, initargs=(self.niceness,))
        return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is broken:
            log.warning("the %s process died; starting a new one", self.name)
            self._pool = None
            broken.shutdown(wait=False, cancel_futures=True)
