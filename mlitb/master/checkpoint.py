"""A project's trained state as one value: what a restarted master needs to resume exactly.

Stored as msgpack at `projects/{id}/checkpoint`; float arrays as float32 bytes
(optimizer state arrays as their own dtype), so a resume is bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """`params` are the parameters iteration `iteration` starts with."""

    iteration: int
    params: np.ndarray
    optimizer_state: dict[str, Any]
    allocation: dict[str, list[str]] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    credit: dict[str, dict[str, Any]] = field(default_factory=dict)  # volunteer id -> totals (credit.py)

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "version": FORMAT_VERSION,
                "iteration": self.iteration,
                "params": np.ascontiguousarray(self.params, dtype="<f4").tobytes(),
                "optimizer_state": _pack_arrays(self.optimizer_state),
                "allocation": self.allocation,
                "metrics": self.metrics,
                "credit": self.credit,
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> Checkpoint:
        raw = msgpack.unpackb(data, raw=False)
        if raw.get("version") != FORMAT_VERSION:
            raise ValueError(f"checkpoint format {raw.get('version')!r} is not {FORMAT_VERSION}")
        return cls(
            iteration=raw["iteration"],
            params=np.frombuffer(raw["params"], dtype="<f4").copy(),
            optimizer_state=_unpack_arrays(raw["optimizer_state"]),
            allocation=raw["allocation"],
            metrics=raw["metrics"],
            credit=raw.get("credit", {}),
        )


def _pack_arrays(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.dtype.str, "shape": list(value.shape), "data": np.ascontiguousarray(value).tobytes()}
    if isinstance(value, dict):
        return {k: _pack_arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack_arrays(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _unpack_arrays(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.frombuffer(value["data"], dtype=np.dtype(value["__ndarray__"])).reshape(value["shape"]).copy()
        return {k: _unpack_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack_arrays(v) for v in value]
    return value
