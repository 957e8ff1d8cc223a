"""Predictions when no worker can take them: one spawned process beside the master, never its event loop.

The same kind of process as the evaluator (evaluator.py, whose initializer it
shares: lower priority, Ctrl-C ignored, gone when the master dies). It keeps
one net per layer list between calls, so a call ships only the parameters and
the chunk's pixels. If the process dies the pool is replaced and the call
tried once more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from mlitb.master.evaluator import _start_process
from mlitb.model import Net
from mlitb.model.classify import classify

log = logging.getLogger("mlitb.master.predict_process")

# ------------------------------------------------------------ in the prediction process

_nets: dict[str, Net] = {}


def _predict(layers: str, params: bytes, pixels: np.ndarray, scale: float, offset: float) -> np.ndarray:
    net = _nets.get(layers)
    if net is None:
        _nets.clear()  # one project's net at a time is plenty for a fallback
        net = _nets[layers] = Net(json.loads(layers))
    return classify(net, np.frombuffer(params, np.float32), pixels, scale, offset)


# ------------------------------------------------------------ in the master


class PredictProcess:
    """The master's handle on its prediction process (started at the first call)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def predict(self, layers: list[dict[str, Any]], params: np.ndarray, pixels: np.ndarray,
                      normalization: dict[str, float]) -> np.ndarray:
        args = (json.dumps(layers, sort_keys=True), np.asarray(params, np.float32).tobytes(), pixels,
                float(normalization["scale"]), float(normalization["offset"]))
        for attempt in (1, 2):
            pool = self._executor()
            try:
                return await asyncio.wrap_future(pool.submit(_predict, *args))
            except BrokenProcessPool:
                if self._pool is pool:
                    log.warning("the prediction process died; starting a new one")
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_process)
        return self._pool
