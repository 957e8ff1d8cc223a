"""The worker's compute loop against the real numpy engine: budgets, sums, slowdown."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.data.shards import Shard
from mlitb.model import Net
from mlitb.worker.compute import (
    Examples,
    Normalization,
    batch_size_for,
    compute,
    gather,
)

LAYERS = [
    {"type": "input", "out_sx": 8, "out_sy": 8, "out_depth": 1},
    {"type": "conv", "sx": 3, "filters": 4, "stride": 1, "pad": 1, "activation": "relu"},
    {"type": "pool", "sx": 2, "stride": 2},
    {"type": "softmax", "num_classes": 3},
]


@pytest.fixture(scope="module")
def net() -> Net:
    return Net(LAYERS)


def make_examples(n: int, seed: int = 0) -> Examples:
    rng = np.random.default_rng(seed)
    return Examples(rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), rng.integers(0, 3, n).astype(np.int64))


class ManualClock:
    """Time that moves only when the engine computes a batch (or the worker sleeps)."""

    def __init__(self, batch_ms: float) -> None:
        self.now = 0.0
        self.batch_s = batch_ms / 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def timed(self, gradient):
        def run(*args):
            self.now += self.batch_s
            return gradient(*args)

        return run


def test_stops_before_the_batch_that_would_overrun(net):
    clock = ManualClock(batch_ms=10)
    result = compute(
        clock.timed(net.gradient), net.init_params(1), make_examples(1000), 95, Normalization(),
        seed=0, batch_size=32, clock=clock, sleep=clock.sleep,
    )
    assert len(result.batches) == 9  # a tenth batch would end at 100 ms > 95 ms
    assert result.count == 9 * 32
    assert result.compute_ms == pytest.approx(90)


def test_always_computes_one_batch_even_with_no_budget(net):
    clock = ManualClock(batch_ms=10)
    result = compute(
        clock.timed(net.gradient), net.init_params(1), make_examples(100), 0, Normalization(),
        seed=0, batch_size=16, clock=clock, sleep=clock.sleep,
    )
    assert (result.batches, result.count) == ((16,), 16)


def test_slowdown_sleeps_so_fewer_batches_fit(net):
    clock = ManualClock(batch_ms=10)
    result = compute(
        clock.timed(net.gradient), net.init_params(1), make_examples(1000), 210, Normalization(),
        seed=0, batch_size=32, slowdown=4.0, clock=clock, sleep=clock.sleep,
    )
    assert len(result.batches) == 5  # 40 ms per batch: a sixth would end at 240 ms
    assert result.compute_ms == pytest.approx(200)


def test_one_epoch_sums_to_the_full_batch_gradient(net):
    """The work's order is a permutation: two batches of 32 cover all 64 examples once."""
    examples = make_examples(64, seed=3)
    params = net.init_params(7)
    clock = ManualClock(batch_ms=10)
    norm = Normalization(scale=1 / 128, offset=-1.0)
    result = compute(
        clock.timed(net.gradient), params, examples, 25, norm,
        seed=5, batch_size=32, clock=clock, sleep=clock.sleep,
    )
    assert result.count == 64
    x = examples.pixels.astype(np.float32) / 128 - 1.0
    full = net.gradient(params, x, examples.labels)
    np.testing.assert_allclose(result.grad_sum, full.grad_sum, rtol=1e-4, atol=1e-5)
    assert result.loss_sum == pytest.approx(full.loss_sum, rel=1e-5)
    assert result.correct == full.correct


def test_stops_at_the_end_of_one_pass(net):
    clock = ManualClock(batch_ms=1)
    result = compute(
        clock.timed(net.gradient), net.init_params(1), make_examples(40), 1000, Normalization(),
        seed=0, batch_size=32, clock=clock, sleep=clock.sleep,
    )
    assert (result.count, result.batches) == (40, (32, 8))


def test_follows_the_seeded_order_and_recompute_matches_bit_for_bit(net):
    """Batches are taken from work_order's prefix with position-derived dropout seeds; recompute repeats them."""
    from mlitb.work_order import batch_seed, prefix
    from mlitb.worker.compute import recompute
    a = Shard(np.random.default_rng(1).integers(0, 256, (30, 8, 8, 1), dtype=np.uint8), np.arange(30) % 3)
    b = Shard(np.random.default_rng(2).integers(0, 256, (20, 8, 8, 1), dtype=np.uint8), np.arange(20) % 3)
    examples, params = gather([a, b]), net.init_params(3)
    clock = ManualClock(batch_ms=10)
    result = compute(clock.timed(net.gradient), params, examples, 35, Normalization(), seed=77, batch_size=16,
                     clock=clock, sleep=clock.sleep)
    assert result.batches == (16, 16, 16)
    shard, index = prefix([30, 20], 77, 48)
    x = np.stack([(a, b)[s].pixels[i] for s, i in zip(shard, index)]).astype(np.float32) / 255
    y = np.array([(a, b)[s].labels[i] for s, i in zip(shard, index)])
    expected = sum(net.gradient(params, x[p:p + 16], y[p:p + 16], batch_seed(77, p)).grad_sum for p in (0, 16, 32))
    np.testing.assert_allclose(result.grad_sum, expected, rtol=1e-6, atol=1e-7)
    again = recompute(net.gradient, params, examples, Normalization(), 77, result.batches)
    assert np.array_equal(again.grad_sum, result.grad_sum)
    assert (again.count, again.loss_sum, again.correct) == (result.count, result.loss_sum, result.correct)
    other = compute(net.gradient, params, examples, 1000, Normalization(), seed=78, batch_size=48)
    assert not np.array_equal(other.grad_sum, result.grad_sum)


def test_real_clock_keeps_within_budget(net):
    result = compute(
        net.gradient, net.init_params(1), make_examples(2000), 150, Normalization(),
        seed=0, batch_size=32,
    )
    assert len(result.batches) > 1
    assert np.isfinite(result.grad_sum).all()
    # One batch here takes ~1 ms; allow scheduler noise on a busy machine, not a second batch's worth of waste.
    assert result.compute_ms < 150 + 50


def test_gather_concatenates_shards_in_order():
    a = Shard(np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 1]))
    b = Shard(np.ones((3, 8, 8, 1), np.uint8), np.array([2, 2, 1]))
    examples = gather([a, b])
    assert examples.count == 5
    assert examples.counts == (2, 3)
    assert examples.labels.tolist() == [0, 1, 2, 2, 1]
    assert examples.pixels[2:].min() == 1
    with pytest.raises(ValueError):
        gather([])


def test_batches_shrink_so_several_fit_a_slow_devices_budget():
    # 1,000 examples/s and a 400 ms budget: 8 batches of 50 would fit, capped at 32.
    assert batch_size_for(400, 0.001, largest=32, smallest=4, batches_per_budget=8) == 32
    # 90 examples/s (a slow device): batches of 10 (~110 ms) instead of 32 (~350 ms) in a 900 ms budget.
    assert batch_size_for(900, 1 / 90, largest=32, smallest=4, batches_per_budget=8) == 10
    assert batch_size_for(100, 0.1, largest=32, smallest=4, batches_per_budget=8) == 4
    assert batch_size_for(100, None, largest=32, smallest=4, batches_per_budget=8) == 32
