"""One unit of work: gradients over the assigned examples until the time budget runs out.

There is no batch size in the protocol; the master gives a wall-time budget so
that every worker's result arrives by the iteration's deadline whatever its
speed. This module turns a budget into batches: it draws examples in random
order without replacement, times each batch, and stops before a batch that
would overrun. It does no I/O, so it is tested directly against the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mlitb.data.shards import Shard
from mlitb.model import BatchGradient

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
    batches: int


def gather(shards: Sequence[Shard]) -> Examples:
    """Concatenate shards once per distinct shard set (the worker caches the result)."""
    if not shards:
        raise ValueError("no shards to draw examples from")
    return Examples(
        pixels=np.concatenate([s.pixels for s in shards]),
        labels=np.concatenate([s.labels for s in shards]),
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
    rng: np.random.Generator,
    batch_size: int = 32,
    slowdown: float = 1.0,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> WorkResult:
    """Sum gradients over random batches until the next batch would exceed `budget_ms`.

    At least one batch is always computed (a result needs count ≥ 1); after
    that a batch starts only if the slowest batch so far still fits, so a
    result overruns the budget by at most timing noise. `slowdown` > 1 sleeps
    (slowdown − 1) × each batch's compute time: a test knob that makes a real
    process behave like a slower CPU, and its reported compute time with it.
    """
    start = clock()
    order = rng.permutation(examples.count)
    cursor = 0
    grad_sum = np.zeros(params.shape, dtype=np.float32)
    count = correct = batches = 0
    loss_sum = 0.0
    slowest = 0.0
    scale = np.float32(normalization.scale)
    offset = np.float32(normalization.offset)
    while batches == 0 or (clock() - start + slowest) * 1000.0 <= budget_ms:
        if cursor >= order.size:
            order, cursor = rng.permutation(examples.count), 0
        idx = order[cursor:cursor + batch_size]
        cursor += idx.size
        batch_start = clock()
        x = examples.pixels[idx].astype(np.float32) * scale + offset
        g = gradient(params, x, examples.labels[idx], int(rng.integers(0, 2**32)))
        if slowdown > 1.0:
            sleep((slowdown - 1.0) * (clock() - batch_start))
        slowest = max(slowest, clock() - batch_start)
        grad_sum += g.grad_sum
        count += g.count
        loss_sum += g.loss_sum
        correct += g.correct
        batches += 1
    return WorkResult(grad_sum, count, loss_sum, correct, (clock() - start) * 1000.0, batches)
