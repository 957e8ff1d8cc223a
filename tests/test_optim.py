"""Optimizers: single steps checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.model import Net, ParamBlock
from mlitb.optim import make_optimizer, optimizer_defaults

# two weights (l1 mul 0.5, l2 mul 1) and one bias (never decays)
LAYOUT = [ParamBlock(1, "weights", (1, 2), 0, 2, 0.5, 1.0), ParamBlock(1, "biases", (1,), 2, 1, 0.0, 0.0)]


def _w():
    return np.array([1.0, -2.0, 0.5], np.float32)


GRAD_SUM = np.array([2.0, 4.0, -6.0], np.float32)  # with count 2: g = [1, 2, -3]


def test_adagrad_averages_by_count_and_applies_per_element_decay():
    opt = make_optimizer("adagrad", {"learning_rate": 0.1, "l2_decay": 0.1, "l1_decay": 0.2}, LAYOUT)
    w = _w()
    opt.step(w, GRAD_SUM, 2)
    # g = [1, 2, -3] + 0.1*[1, -2, 0] + 0.2*0.5*[1, -1, 0] = [1.2, 1.7, -3]; gsum = g*g; step = 0.1*g/|g|
    assert np.allclose(opt.state_dict()["gsum"], [1.44, 2.89, 9.0])
    assert np.allclose(w, [0.9, -2.1, 0.6], atol=1e-6)


def test_adagrad_accumulates_squares_across_steps():
    opt = make_optimizer("adagrad", {"learning_rate": 0.1}, LAYOUT)
    w = _w()
    opt.step(w, GRAD_SUM, 2)
    opt.step(w, GRAD_SUM, 2)
    # second step: gsum = 2*g*g, so each weight moves 0.1/sqrt(2) more
    assert np.allclose(w, _w() - 0.1 * np.sign([1, 2, -3]) * (1 + 1 / np.sqrt(2)), atol=1e-6)


def test_sgd_momentum_carries_velocity():
    opt = make_optimizer("sgd", {"learning_rate": 0.1, "momentum": 0.5}, LAYOUT)
    w = _w()
    opt.step(w, GRAD_SUM, 2)  # v = [1, 2, -3]
    assert np.allclose(w, [0.9, -2.2, 0.8])
    opt.step(w, np.array([1.0, 0.0, 0.0], np.float32), 1)  # v = 0.5*[1, 2, -3] + [1, 0, 0] = [1.5, 1, -1.5]
    assert np.allclose(w, [0.75, -2.3, 0.95])


def test_sgd_without_momentum_is_plain_gradient_descent():
    opt = make_optimizer("sgd", {"learning_rate": 0.5, "momentum": 0.0}, LAYOUT)
    w = _w()
    opt.step(w, GRAD_SUM, 2)
    opt.step(w, GRAD_SUM, 2)
    assert np.allclose(w, _w() - 2 * 0.5 * np.array([1, 2, -3]))


def test_adam_bias_correction():
    opt = make_optimizer("adam", {"learning_rate": 0.1}, LAYOUT)
    w = _w()
    opt.step(w, GRAD_SUM, 2)  # corrected m = g, v = g*g: every weight moves lr * sign(g)
    assert np.allclose(w, [0.9, -2.1, 0.6], atol=1e-6)
    opt.step(w, np.array([1.0, 0.0, 0.0], np.float32), 1)
    # weight 1: m = 0.09*2 = 0.18 -> 0.18/0.19; v = 0.999*0.004 = 0.003996 -> /0.001999
    m_hat, v_hat = 0.18 / 0.19, 0.003996 / (1 - 0.999**2)
    assert w[0] == pytest.approx(0.8, abs=1e-6)  # weight 0 saw g = 1 twice: corrected m = 1, v = 1
    assert w[1] == pytest.approx(-2.1 - 0.1 * m_hat / np.sqrt(v_hat), abs=1e-6)
    assert opt.state_dict()["t"].tolist() == [2.0]


def test_learning_rate_changes_between_steps():
    opt = make_optimizer("sgd", {"learning_rate": 0.1, "momentum": 0.0}, LAYOUT)
    w = _w()
    opt.set_hyper({"learning_rate": 0.3})
    opt.step(w, GRAD_SUM, 2)
    assert np.allclose(w, _w() - 0.3 * np.array([1, 2, -3]))
    assert opt.hyper["learning_rate"] == 0.3


@pytest.mark.parametrize("name", ["adagrad", "sgd", "adam"])
def test_state_round_trips_through_float32_arrays(name):
    net = Net([{"type": "input", "out_sx": 2, "out_sy": 2, "out_depth": 1}, {"type": "softmax", "num_classes": 3}])
    a = make_optimizer(name, {}, net.layout)
    w = net.init_params(0)
    rng = np.random.default_rng(0)
    a.step(w, rng.normal(size=net.param_count).astype(np.float32), 4)
    state = a.state_dict()
    assert all(v.dtype == np.float32 for v in state.values())
    b = make_optimizer(name, {}, net.layout)
    b.load_state_dict(state)
    grad = rng.normal(size=net.param_count).astype(np.float32)
    wa, wb = w.copy(), w.copy()
    a.step(wa, grad, 3)
    b.step(wb, grad, 3)
    assert np.array_equal(wa, wb)


def test_defaults():
    assert optimizer_defaults("adagrad") == {"learning_rate": 0.01, "l1_decay": 0.0, "l2_decay": 0.0, "eps": 1e-6}
    assert make_optimizer("adam", {}, LAYOUT).hyper["learning_rate"] == 0.001


@pytest.mark.parametrize("name,hyper,words", [
    ("rmsprop", {}, "unknown optimizer 'rmsprop' (allowed: adagrad, sgd, adam, nesterov)"),
    ("adagrad", {"learning_rat": 0.1}, "no hyper-parameter 'learning_rat'"),
    ("adagrad", {"learning_rate": -1}, "'learning_rate' must be > 0"),
    ("sgd", {"momentum": 1.0}, "'momentum' must be in [0, 1)"),
    ("adam", {"beta2": float("inf")}, "must be a finite number"),
    ("adagrad", {"l2_decay": -0.1}, "'l2_decay' must be >= 0"),
])
def test_bad_names_and_values_are_rejected(name, hyper, words):
    with pytest.raises(ValueError) as caught:
        make_optimizer(name, hyper, LAYOUT)
    assert words in str(caught.value)


def test_bad_step_arguments_are_rejected():
    opt = make_optimizer("adagrad", {}, LAYOUT)
    with pytest.raises(ValueError, match="count must be a positive"):
        opt.step(_w(), GRAD_SUM, 0)
    with pytest.raises(ValueError, match="grad_sum must have shape"):
        opt.step(_w(), GRAD_SUM[:2], 1)
    with pytest.raises(ValueError, match="params must be float32"):
        opt.step(_w().astype(np.float64), GRAD_SUM, 1)
    with pytest.raises(ValueError, match="state must have exactly"):
        opt.load_state_dict({"m": np.zeros(3)})
