"""Exponential backoff, the one formula every retry in mlitb uses (checkpoint writes, loop restarts, reconnects)."""

from __future__ import annotations

import math
import random


def exponential_s(failures: int, base_s: float, max_s: float = math.inf) -> float:
    """Seconds to wait after `failures` failures in a row (1, 2, ...): base × 2^(failures−1), at most `max_s`."""
    return min(max_s, base_s * 2.0 ** min(max(failures - 1, 0), 30))


def full_jitter_s(failures: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Uniform in [0, exponential_s]: clients retrying together (after a master restart) spread out."""
    return rng.uniform(0.0, exponential_s(failures, base_s, max_s))
