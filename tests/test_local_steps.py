"""Local steps: the local SGD loop on the real numpy engine, and the outer optimizers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.local_steps import PartResult, outer_optimizer, run_local_steps
from mlitb.model import Net, ParamBlock

LAYOUT = [ParamBlock(1, "weights", (1, 2), 0, 2, 0.5, 1.0), ParamBlock(1, "biases", (1,), 2, 1, 0.0, 0.0)]
GRAD_SUM = np.array([2.0, 4.0, -6.0], np.float32)  # with count 2: g = [1, 2, -3]
LAYERS = [{"type": "input", "out_sx": 1, "out_sy": 1, "out_depth": 4},
          {"type": "fc", "num_neurons": 8, "activation": "tanh"},
          {"type": "softmax", "num_classes": 3}]


def test_nesterov_outer_step_by_hand():
    opt = outer_optimizer({"name": "nesterov", "learning_rate": 0.5, "momentum": 0.9}, LAYOUT)
    w = np.array([1.0, -2.0, 0.5], np.float32)
    g = np.array([1.0, 2.0, -3.0])
    opt.step(w, GRAD_SUM, 2)  # v = g; w -= 0.5 (g + 0.9 g)
    assert np.allclose(w, [1.0, -2.0, 0.5] - 0.95 * g, atol=1e-6)
    opt.step(w, GRAD_SUM, 2)  # v = 1.9 g; w -= 0.5 (g + 0.9 × 1.9 g)
    assert np.allclose(w, [1.0, -2.0, 0.5] - (0.95 + 0.5 * 2.71) * g, atol=1e-5)
    assert np.allclose(opt.state_dict()["velocity"], 1.9 * g)


def test_outer_lr_one_without_momentum_is_the_count_weighted_average_of_local_models():
    start = np.array([1.0, -2.0, 0.5], np.float32)
    ends = [(np.array([0.0, 0.0, 0.0], np.float32), 30), (np.array([2.0, 2.0, 2.0], np.float32), 10)]
    grad_sum = sum((start - end) * np.float32(n) for end, n in ends)
    opt = outer_optimizer({"name": "nesterov", "learning_rate": 1.0, "momentum": 0.0}, LAYOUT)
    w = start.copy()
    opt.step(w, grad_sum, 40)
    assert np.allclose(w, [0.5, 0.5, 0.5])


def test_adagrad_is_allowed_and_others_are_refused():
    assert outer_optimizer({"name": "adagrad", "learning_rate": 0.1}, LAYOUT).name == "adagrad"
    with pytest.raises(ValueError, match="unknown outer optimizer 'adam'.*nesterov, adagrad"):
        outer_optimizer({"name": "adam"}, LAYOUT)


def _data(n: int = 96):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (n, 4)).astype(np.float32)
    labels = np.argmax(x[:, :3], axis=1)
    return x.reshape(n, 1, 1, 4), labels


def _part(net: Net, x: np.ndarray, labels: np.ndarray, batch: int):
    def part(w: np.ndarray, h: int) -> PartResult:
        idx = np.arange(h * batch, (h + 1) * batch) % len(labels)
        g = net.gradient(w, x[idx], labels[idx], seed=h)
        return PartResult(g.grad_sum, g.count, g.loss_sum, g.correct)
    return part


def test_one_local_step_is_the_gradient_times_the_learning_rate():
    net = Net(LAYERS)
    w = net.init_params(1)
    x, labels = _data()
    g = net.gradient(w, x[:32], labels[:32], seed=0)
    r = run_local_steps(_part(net, x, labels, 32), w, 1, 0.1)
    assert r.count == 32 and r.steps == 1
    np.testing.assert_allclose(r.grad_sum, 0.1 * g.grad_sum, rtol=1e-4, atol=1e-7)


def test_local_steps_descend_return_start_minus_end_times_count_and_are_deterministic():
    net = Net(LAYERS)
    w = net.init_params(2)
    before = w.copy()
    x, labels = _data()
    part = _part(net, x, labels, 24)
    r = run_local_steps(part, w, 16, 0.5)
    assert np.array_equal(w, before)  # the caller's parameters are untouched
    assert r.count == 16 * 24
    end = w - r.grad_sum / np.float32(r.count)
    loss = lambda p: net.gradient(p, x, labels).loss_sum
    assert loss(end) < 0.8 * loss(w)
    again = run_local_steps(part, w, 16, 0.5)
    assert again.grad_sum.tobytes() == r.grad_sum.tobytes()  # a spot check recomputes it exactly


def test_zero_steps_are_refused():
    with pytest.raises(ValueError, match="local steps must be >= 1"):
        run_local_steps(lambda w, h: PartResult(w, 1, 0.0, 0), np.zeros(3, np.float32), 0, 0.1)
