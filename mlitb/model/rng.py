"""mulberry32, the small JavaScript PRNG, vectorised: both engines draw identical dropout masks.

mulberry32's state only ever adds 0x6D2B79F5, so draw k (1-based) depends on
`seed + k * 0x6D2B79F5 (mod 2**32)` alone and a whole stream is one numpy
expression. The JS reference it must equal, bit for bit:

    a = (a + 0x6D2B79F5) | 0; t = imul(a ^ (a >>> 15), 1 | a);
    t = (t + imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
"""

from __future__ import annotations

import numpy as np

_STEP = np.uint32(0x6D2B79F5)


def mulberry32(seed: int, n: int, start: int = 0) -> np.ndarray:
    """Draws start .. start+n-1 of the stream seeded with `seed` (taken mod 2**32), as float64 in [0, 1)."""
    k = np.arange(start + 1, start + n + 1, dtype=np.uint64).astype(np.uint32)
    a = k * _STEP + np.uint32(seed & 0xFFFFFFFF)
    t = (a ^ (a >> np.uint32(15))) * (a | np.uint32(1))
    t = (t + (t ^ (t >> np.uint32(7))) * (t | np.uint32(61))) ^ t
    return (t ^ (t >> np.uint32(14))).astype(np.float64) / 4294967296.0
