"""Predictions when no worker can take them: one spawned process beside the master, never its event loop.

A process beside the master like the evaluator's (side_process.py). It keeps
one net per layer list between calls, so a call ships only the parameters and
the chunk's pixels.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mlitb.master.side_process import SideProcess
from mlitb.model import Net
from mlitb.model.classify import classify

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
        self.process = SideProcess("prediction")

    async def predict(self, layers: list[dict[str, Any]], params: np.ndarray, pixels: np.ndarray,
                      normalization: dict[str, float]) -> np.ndarray:
        return await self.process.call(_predict, json.dumps(layers, sort_keys=True),
                                       np.asarray(params, np.float32).tobytes(), pixels,
                                       float(normalization["scale"]), float(normalization["offset"]))

    async def close(self) -> None:
        await self.process.close()
