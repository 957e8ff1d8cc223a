"""One unit of work: gradients over the assigned examples until the time budget runs out.

There is no batch size in the protocol; the master gives a wall-time budget so
that every worker's result arrives by the iteration's deadline whatever its
speed. This module turns a budget into batches: it walks the work's example
order (work_order.py: fixed by the work's seed, so the master can recompute
the result), times each batch, and stops before a batch that would overrun or
at the end of one pass. It does no I/O, so it is tested directly against the
engine; `recompute` is the same arithmetic without the clock, for the verifier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mlitb.data.shards import Shard
from mlitb.model import BatchGradient
from mlitb.work_order import MAX_BATCHES, batch_seed, example_order

GradientFn = Callable[[np.ndarray, np.ndarray, np.ndarray, int], BatchGradient]


@dataclass(frozen=True)
class Normalization:
    """Input = pixel × scale + offset, as the project stores it."""

    scale: float = 1 / 255
    offset: float = 0.0


@dataclass(frozen=True)
class Examples:
    """The pixels and labels of the shards a work message lists, side by side."""

    pixels: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,)
    counts: tuple[int, ...] = ()  # examples per shard, in the work's order; () = one shard

    @property
    def shard_counts(self) -> tuple[int, ...]:
        return self.counts or (self.count,)

    @property
    def count(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class WorkResult:
    """Sums over every example processed, ready for a `result` frame."""

    grad_sum: np.ndarray
    count: int
    loss_sum: float
    correct: int
    compute_ms: float
    batches: tuple[int, ...]  # sizes of the batches, in order: the `batches` field of the result


def gather(shards: Sequence[Shard]) -> Examples:
    """Concatenate shards once per distinct shard set (the worker caches the result)."""
    if not shards:
        raise ValueError("no shards to draw examples from")
    return Examples(
        pixels=np.concatenate([s.pixels for s in shards]),
        labels=np.concatenate([s.labels for s in shards]),
        counts=tuple(int(s.labels.shape[0]) for s in shards),
    )


def batch_size_for(budget_ms: float, seconds_per_example: float | None, largest: int, smallest: int,
                   batches_per_budget: int) -> int:
    """Batches small enough that at least `batches_per_budget` fit the budget, at the rate seen before.

    The loop stops before a batch that would not fit, so up to one batch of
    the budget goes unused (or, if the machine slows down mid-batch, over);
    on a slow device that batch must be a small part of the budget.
    """
    if not seconds_per_example:
        return largest
    fitting = int(budget_ms / 1000.0 / batches_per_budget / seconds_per_example)
    return max(smallest, min(largest, fitting))


def compute(
    gradient: GradientFn,
    params: np.ndarray,
    examples: Examples,
    budget_ms: float,
    normalization: Normalization,
    *,
    seed: int,
    batch_size: int = 32,
    slowdown: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> WorkResult:
    """Sum gradients over the work's example order, batch by batch, until the budget or one pass ends.

    At least one batch is always computed (a result needs count ≥ 1); after
    that a batch starts only if the slowest batch so far still fits, so a
    result overruns the budget by at most timing noise. `slowdown` > 1 sleeps
    (slowdown − 1) × each batch's compute time: a test knob that makes a real
    process behave like a slower CPU, and its reported compute time with it.
    """
    start = clock()
    order = example_order(examples.shard_counts, seed)
    sums = _Sums(np.zeros(params.shape, dtype=np.float32))
    slowest = 0.0
    while sums.count < order.size and len(sums.batches) < MAX_BATCHES and (not sums.batches or (clock() - start + slowest) * 1000.0 <= budget_ms):
        batch_start = clock()
        sums.add(_batch(gradient, params, examples, order, sums.count, batch_size, normalization, seed))
        if slowdown > 1.0:
            sleep((slowdown - 1.0) * (clock() - batch_start))
        slowest = max(slowest, clock() - batch_start)
    return sums.result((clock() - start) * 1000.0)


def recompute(gradient: GradientFn, params: np.ndarray, examples: Examples, normalization: Normalization,
              seed: int, batches: Sequence[int]) -> WorkResult:
    """Exactly what `compute` returned for these batch sizes: the verifier's reference (no clock)."""
    order = example_order(examples.shard_counts, seed)
    if sum(batches) > order.size:
        raise ValueError(f"the batches cover {sum(batches)} examples; the work holds {order.size}")
    sums = _Sums(np.zeros(params.shape, dtype=np.float32))
    for size in batches:
        sums.add(_batch(gradient, params, examples, order, sums.count, int(size), normalization, seed))
    return sums.result(0.0)


@dataclass
class _Sums:
    """Running sums of the batch gradients, added in batch order (so a recomputation is bit-identical)."""

    grad_sum: np.ndarray
    count: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    batches: list[int] = field(default_factory=list)

    def add(self, g: BatchGradient) -> None:
        self.grad_sum += g.grad_sum
        self.count += g.count
        self.loss_sum += g.loss_sum
        self.correct += g.correct
        self.batches.append(g.count)

    def result(self, compute_ms: float) -> WorkResult:
        return WorkResult(self.grad_sum, self.count, self.loss_sum, self.correct, compute_ms, tuple(self.batches))


def _batch(gradient: GradientFn, params: np.ndarray, examples: Examples, order: np.ndarray, position: int,
           size: int, normalization: Normalization, seed: int) -> BatchGradient:
    """The batch of `size` examples starting at `position` of the order, dropout seeded by its position."""
    idx = order[position:position + size]
    x = examples.pixels[idx].astype(np.float32) * np.float32(normalization.scale) + np.float32(normalization.offset)
    return gradient(params, x, examples.labels[idx], batch_seed(seed, position))
