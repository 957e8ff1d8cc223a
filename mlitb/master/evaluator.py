"""One long-lived evaluation process per master (side_process.py), so test metrics never delay the event loop.

The process keeps each project's net and decoded test set between calls, so
a call ships only the float32 parameter bytes; a process that does not have
them (new, or restarted after it died) answers None and gets the source once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import numpy as np

from mlitb.master.evaluation import (
    Evaluation,
    TestSet,
    TestSource,
    decode_test_set,
    evaluate,
)
from mlitb.master.side_process import SideProcess
from mlitb.model import Net

# ------------------------------------------------------------ in the evaluation process

_cache: dict[str, tuple[Net, TestSet]] = {}


def _load(key: str, source: TestSource) -> None:
    _cache[key] = (Net(source.layers), decode_test_set(source))


def _evaluate(key: str, params: bytes) -> Evaluation | None:
    if key not in _cache:
        return None
    net, test = _cache[key]
    return evaluate(net, np.frombuffer(params, np.float32), test)


def _forget(key: str) -> None:
    _cache.pop(key, None)


# ------------------------------------------------------------ in the master

LoadSource = Callable[[], Awaitable[TestSource]]


class Evaluator:
    """The master's handle on the evaluation process (started at the first evaluation)."""

    def __init__(self) -> None:
        self.process = SideProcess("evaluation")

    async def evaluate(self, key: str, params: np.ndarray, load: LoadSource) -> Evaluation:
        """Loss and accuracy of `params` on project `key`'s test set; `load` is awaited when the process lacks it."""
        data = params.astype(np.float32).tobytes()
        for _ in (1, 2):  # a process replaced between the calls has lost the test set: load it again
            result = await self.process.call(_evaluate, key, data)
            if result is None:
                await self.process.call(_load, key, await load())
                result = await self.process.call(_evaluate, key, data)
            if result is not None:
                return result
        raise RuntimeError(f"the evaluation process lost project {key}'s test set twice in a row")

    def start(self) -> None:
        self.process.start()

    def forget(self, key: str) -> None:
        """Free a deleted project's cached test set (fire and forget)."""
        if self.process.started:
            self.process.submit(_forget, key)

    async def pid(self) -> int:
        return await self.process.pid()

    async def close(self) -> None:
        await self.process.close()
