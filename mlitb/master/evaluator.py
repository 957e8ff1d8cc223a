"""One long-lived evaluation process per master, so test metrics never delay the event loop.

Evaluation in a thread of the master shares its GIL and, on a small machine,
its cores: a result that reached the socket before the deadline could be
read after it and dropped as late (bench/eval_lateness.py measures this).
The process keeps each project's net and decoded test set between calls, so
a call ships only the float32 parameter bytes; a process that does not have
them (new, or restarted after it died) answers None and gets the source
once. If the process dies, the pool is replaced and the call tried again
once. The process runs at a lower priority, ignores Ctrl-C (the master stops
it at shutdown) and exits by itself if the master dies without stopping it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait

import numpy as np

from mlitb.master.evaluation import (
    Evaluation,
    TestSet,
    TestSource,
    decode_test_set,
    evaluate,
)
from mlitb.model import Net
from mlitb.model.memory import retain_freed_memory

log = logging.getLogger("mlitb.master.evaluator")

NICENESS = 5

# ------------------------------------------------------------ in the evaluation process

_cache: dict[str, tuple[Net, TestSet]] = {}


def _start_process() -> None:
    """Initializer: yield the CPU to the master's loop and workers, and never outlive the master."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICENESS)
    retain_freed_memory()  # this process runs the engine (the master never does: it keeps its memory small)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    wait([sentinel])
    os._exit(0)


def _load(key: str, source: TestSource) -> None:
    _cache[key] = (Net(source.layers), decode_test_set(source))


def _evaluate(key: str, params: bytes) -> Evaluation | None:
    if key not in _cache:
        return None
    net, test = _cache[key]
    return evaluate(net, np.frombuffer(params, np.float32), test)


def _forget(key: str) -> None:
    _cache.pop(key, None)


def _pid() -> int:
    return os.getpid()


# ------------------------------------------------------------ in the master

LoadSource = Callable[[], Awaitable[TestSource]]


class Evaluator:
    """The master's handle on the evaluation process (started at the first evaluation)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def evaluate(self, key: str, params: np.ndarray, load: LoadSource) -> Evaluation:
        """Loss and accuracy of `params` on project `key`'s test set; `load` is awaited when the process lacks it."""
        data = params.astype(np.float32).tobytes()
        for attempt in (1, 2):
            pool = self._executor()
            try:
                result = await self._call(pool, _evaluate, key, data)
                if result is None:
                    await self._call(pool, _load, key, await load())
                    result = await self._call(pool, _evaluate, key, data)
                if result is not None:
                    return result
            except BrokenProcessPool:
                self._replace(pool)
                if attempt == 2:
                    raise
        raise RuntimeError(f"the evaluation process lost project {key}'s test set twice in a row")

    def start(self) -> None:
        """Start the process now (idempotent): its start-up (a Python and numpy, at normal priority until its
        initializer runs) is a second of CPU that must not land in the middle of a project's iteration."""
        if self._pool is None:
            self._executor().submit(_pid)

    def forget(self, key: str) -> None:
        """Free a deleted project's cached test set (fire and forget)."""
        if self._pool is not None:
            try:
                self._pool.submit(_forget, key)
            except (BrokenProcessPool, RuntimeError):
                pass

    async def pid(self) -> int:
        """The evaluation process's id (starting it if needed): for operators and the restart test."""
        return await self._call(self._executor(), _pid)

    async def close(self) -> None:
        """Stop the process; a call in progress finishes first, queued ones are cancelled."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_process)
        return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Drop a pool whose process died; the next call starts a fresh one."""
        if self._pool is broken:
            log.warning("the evaluation process died; starting a new one")
            self._pool = None
            broken.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    async def _call(pool: ProcessPoolExecutor, fn: Callable, *args: object):
        return await asyncio.wrap_future(pool.submit(fn, *args))
