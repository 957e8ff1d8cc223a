"""The deterministic example order of a `work` frame: which examples, in what order, with which dropout seeds.

A result covers a prefix of this order, so the master knows exactly which
examples a claimed count stands for, bounds the count by what the trainer
holds, and can recompute any result bit for bit (verifier.py). The same
definition lives in mlitb/static/js/work-order.js; tests/vectors/order/work_order.json
pins the two together. docs/protocol.md (`work`/`result`) is the spec:

* the work's examples are its shards' examples concatenated in the order the
  `shards` list gives (shard k's example j has global index start_k + j);
* the order is a Fisher–Yates permutation of 0..N−1 drawn from mulberry32(seed):
  for i = N−1 down to 1, take the next uint32 r and j = floor(r·(i+1) / 2^32)
  (exact integer arithmetic), then swap positions i and j;
* batch b starting at position p of the order uses dropout seed
  (seed + 0x9E3779B9·p) mod 2^32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlitb.model.rng import mulberry32

BATCH_SEED_STEP = 0x9E3779B9
MAX_BATCHES = 4096  # a result lists at most this many batch sizes


def _uint32_stream(seed: int, n: int) -> np.ndarray:
    """mulberry32's first n draws as the uint32 values they are (the float draw is r / 2^32, exactly)."""
    return (mulberry32(seed, n) * 4294967296.0).astype(np.uint64)


def example_order(counts: Sequence[int], seed: int) -> np.ndarray:
    """The permutation of the work's N = Σcounts global example indices (int64), first position first."""
    total = int(sum(int(c) for c in counts))
    if any(int(c) < 0 for c in counts):
        raise ValueError(f"shard example counts must be >= 0, got {list(counts)}")
    if total >= 2**32:
        raise ValueError(f"a work holds at most 2^32 - 1 examples, got {total}")
    if total < 2:
        return np.arange(total, dtype=np.int64)
    sizes = np.arange(total, 1, -1, dtype=np.uint64)  # i + 1 for i = N-1 .. 1
    picks = ((_uint32_stream(seed, total - 1) * sizes) >> np.uint64(32)).tolist()
    order = list(range(total))
    for i, j in zip(range(total - 1, 0, -1), picks):
        order[i], order[j] = order[j], order[i]
    return np.asarray(order, dtype=np.int64)


def batch_seed(seed: int, position: int) -> int:
    """The dropout seed of the batch that starts at `position` of the order."""
    return (seed + BATCH_SEED_STEP * position) % 2**32


def batch_seeds(seed: int, batches: Sequence[int]) -> list[int]:
    """The dropout seed of each batch of a result, from the batch sizes it reports."""
    seeds, position = [], 0
    for size in batches:
        seeds.append(batch_seed(seed, position))
        position += int(size)
    return seeds


def locate(counts: Sequence[int], indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard index, example index within the shard) of global example indices."""
    starts = np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])
    indices = np.asarray(indices, dtype=np.int64)
    shard = np.searchsorted(starts, indices, side="right") - 1
    return shard, indices - starts[shard]


def prefix(counts: Sequence[int], seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(shard index, example index) of the first `count` examples of the order (count <= N)."""
    total = int(sum(counts))
    if not 0 <= count <= total:
        raise ValueError(f"a result covers at most one pass: count {count} is not in 0..{total}")
    return locate(counts, example_order(counts, seed)[:count])


def check_batches(batches: Sequence[int], count: int) -> str | None:
    """Why a result's batch list is invalid (None when valid): positive ints, bounded, summing to count."""
    if not isinstance(batches, (list, tuple)) or not batches:
        return "'batches' must be a non-empty list of batch sizes"
    if len(batches) > MAX_BATCHES:
        return f"'batches' lists {len(batches)} batches; at most {MAX_BATCHES} are allowed (use larger batches)"
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in batches):
        return "'batches' must hold integers >= 1"
    if sum(batches) != count:
        return f"'batches' sums to {sum(batches)}, but 'count' is {count}"
    return None
