"""Euclidean norms of float32 vectors that never call a large finite vector infinite, at float32 speed.

Converting a 400k-float gradient to float64 costs ~15 ms on the master's
machine (allocation and page faults) against ~0.1 ms for a float32 BLAS dot;
the dot overflows only when the squared norm passes 3.4e38, and then the
vector is summed again in float64, chunk by chunk. The result is a float64.
"""

from __future__ import annotations

import numpy as np

CHUNK = 65536


def norm(vector: np.ndarray) -> float:
    """‖vector‖ as a Python float; finite for any finite input."""
    v = np.ravel(vector)
    with np.errstate(over="ignore", invalid="ignore"):
        squared = float(np.dot(v, v))
    if np.isfinite(squared):
        return float(np.sqrt(squared))
    scale = float(np.max(np.abs(v))) if v.size else 0.0
    if not np.isfinite(scale) or scale == 0.0:
        return scale
    total = 0.0
    for start in range(0, v.size, CHUNK):
        part = v[start:start + CHUNK].astype(np.float64) / scale
        total += float(np.dot(part, part))
    return scale * float(np.sqrt(total))
