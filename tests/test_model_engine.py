"""The numpy engine: finite-difference gradient checks per layer type and whole nets, dropout, predict."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.model import Net, mulberry32, ops
from mlitb.model.memory import retain_freed_memory
from mlitb.model.spec import expand


def _input(sx, sy, depth):
    return {"type": "input", "out_sx": sx, "out_sy": sy, "out_depth": depth}


NETS = {
    "fc": [_input(1, 1, 5), {"type": "fc", "num_neurons": 4}, {"type": "softmax", "num_classes": 3}],
    "relu": [_input(1, 1, 5), {"type": "fc", "num_neurons": 6, "activation": "relu"},
             {"type": "softmax", "num_classes": 3}],
    "tanh": [_input(2, 3, 2), {"type": "fc", "num_neurons": 4}, {"type": "tanh"}, {"type": "softmax", "num_classes": 3}],
    "sigmoid": [_input(2, 2, 2), {"type": "fc", "num_neurons": 4, "activation": "sigmoid"},
                {"type": "softmax", "num_classes": 3}],
    "conv": [_input(5, 4, 2), {"type": "conv", "sx": 3, "filters": 3}, {"type": "softmax", "num_classes": 3}],
    "conv_stride_pad": [_input(7, 6, 3), {"type": "conv", "sx": 3, "sy": 2, "filters": 2, "stride": 2, "pad": 1},
                        {"type": "conv", "sx": 2, "filters": 2, "stride": 2, "pad": 2},
                        {"type": "softmax", "num_classes": 2}],
    "conv_one_channel": [_input(6, 6, 1), {"type": "conv", "sx": 3, "filters": 2, "stride": 2, "pad": 1},
                         {"type": "softmax", "num_classes": 2}],
    "pool": [_input(6, 5, 2), {"type": "conv", "sx": 3, "filters": 2, "pad": 1}, {"type": "pool", "sx": 2},
             {"type": "softmax", "num_classes": 3}],
    "pool_pad_overlap": [_input(7, 5, 2), {"type": "conv", "sx": 3, "filters": 2, "pad": 1},
                         {"type": "pool", "sx": 3, "sy": 2, "stride": 2, "pad": 1},
                         {"type": "softmax", "num_classes": 3}],
    "dropout": [_input(3, 3, 2), {"type": "conv", "sx": 2, "filters": 3, "drop_prob": 0.4},
                {"type": "fc", "num_neurons": 5, "activation": "tanh"}, {"type": "dropout", "drop_prob": 0.5},
                {"type": "softmax", "num_classes": 3}],
    "convnet": [_input(8, 8, 2), {"type": "conv", "sx": 3, "filters": 4, "pad": 1, "activation": "relu"},
                {"type": "pool", "sx": 2, "stride": 2},
                {"type": "conv", "sx": 3, "filters": 3, "pad": 1, "activation": "sigmoid"},
                {"type": "pool", "sx": 2, "stride": 2},
                {"type": "fc", "num_neurons": 6, "activation": "relu", "drop_prob": 0.2},
                {"type": "softmax", "num_classes": 4}],
}


def _problem(defs, n=3, seed=0):
    net = Net(defs)
    rng = np.random.default_rng(seed)
    params = net.init_params(1).astype(np.float64) + rng.normal(0, 0.1, net.param_count)
    x = rng.normal(size=(n,) + net.input_shape)
    labels = rng.integers(0, net.num_classes, n)
    return net, params, x, labels


@pytest.mark.parametrize("name", sorted(NETS))
def test_gradient_matches_finite_differences(name):
    net, params, x, labels = _problem(NETS[name])
    g = net.gradient(params, x, labels, seed=11)
    assert g.grad_sum.dtype == np.float64
    h = 1e-6
    numeric = np.empty_like(params)
    for i in range(params.size):
        step = np.zeros_like(params)
        step[i] = h
        up = net.gradient(params + step, x, labels, seed=11).loss_sum
        down = net.gradient(params - step, x, labels, seed=11).loss_sum
        numeric[i] = (up - down) / (2 * h)
    assert np.abs(g.grad_sum - numeric).max() <= 1e-6 * max(1.0, np.abs(numeric).max())


def test_batch_gradient_is_the_sum_of_example_gradients():
    net, params, x, labels = _problem(NETS["convnet"][:5] + [NETS["convnet"][-1]], n=5)
    whole = net.gradient(params, x, labels)
    parts = [net.gradient(params, x[i:i + 1], labels[i:i + 1]) for i in range(5)]
    assert whole.count == 5
    assert np.allclose(whole.grad_sum, sum(p.grad_sum for p in parts))
    assert whole.loss_sum == pytest.approx(sum(p.loss_sum for p in parts))
    assert whole.correct == sum(p.correct for p in parts)


def test_loss_and_correct_from_predict():
    net, params, x, labels = _problem(NETS["pool"], n=6)
    probs = net.predict(params, x)
    g = net.gradient(params, x, labels)
    assert np.allclose(probs.sum(axis=1), 1)
    assert g.loss_sum == pytest.approx(-np.log(probs[np.arange(6), labels]).sum())
    assert g.correct == int((probs.argmax(axis=1) == labels).sum())


def test_float32_in_float32_out_and_close_to_float64():
    net, params, x, labels = _problem(NETS["convnet"], n=4)
    g64 = net.gradient(params, x, labels, seed=3)
    g32 = net.gradient(params.astype(np.float32), x.astype(np.float32), labels, seed=3)
    assert g32.grad_sum.dtype == np.float32
    assert net.predict(params.astype(np.float32), x.astype(np.float32)).dtype == np.float32
    assert np.abs(g32.grad_sum - g64.grad_sum).max() < 1e-4 * np.abs(g64.grad_sum).max()


def test_mulberry32_equals_the_javascript_generator():
    # printed by node from the reference JS mulberry32 (see mlitb/model/rng.py)
    assert list(mulberry32(42, 5)) == [0.6011037519201636, 0.44829055899754167, 0.8524657934904099,
                                       0.6697340414393693, 0.17481389874592423]
    assert list(mulberry32(42, 2, start=3)) == [0.6697340414393693, 0.17481389874592423]
    assert list(mulberry32(-1, 2)) == [0.8964226141106337, 0.189478256739676]
    assert list(mulberry32(2**32 + 7, 2)) == [0.011704753153026104, 0.06195825757458806]


def test_dropout_mask_comes_from_one_mulberry32_stream_in_forward_order():
    defs = [_input(1, 1, 4), {"type": "dropout", "drop_prob": 0.5}, {"type": "fc", "num_neurons": 4},
            {"type": "dropout", "drop_prob": 0.25}, {"type": "softmax", "num_classes": 2}]
    net = Net(defs)
    params = np.zeros(net.param_count)
    fc_w = params[:16].reshape(4, 4)
    fc_w[:] = np.eye(4)
    x = np.arange(1.0, 13.0).reshape(3, 1, 1, 4)
    acts, _ = net._forward(params, x, 99, training=True)
    u = mulberry32(99, 24)
    first = np.where(u[:12] < 0.5, 0, x.ravel() * 2)
    assert np.array_equal(acts[1].ravel(), first)
    second = np.where(u[12:] < 0.25, 0, first / 0.75)
    assert np.allclose(acts[3].ravel(), second)
    assert np.array_equal(net._forward(params, x, 99, training=False)[0][3], x)  # identity when predicting


def test_dropout_seed_changes_the_gradient_and_is_reproducible():
    net, params, x, labels = _problem(NETS["dropout"], n=4)
    a, b, c = (net.gradient(params, x, labels, seed=s).grad_sum for s in (5, 5, 6))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_pool_ties_go_to_the_first_maximum_in_row_major_order():
    layer = expand([_input(2, 2, 1), {"type": "pool", "sx": 2}, {"type": "softmax", "num_classes": 2}])[1]
    x = np.array([[0.0, 2.0], [2.0, 1.0]]).reshape(1, 2, 2, 1)
    out, arg = ops.pool_forward(layer, x)
    assert out.ravel().tolist() == [2.0] and arg.ravel().tolist() == [1]
    dx = ops.pool_backward(layer, np.ones((1, 1, 1, 1)), arg, x.shape)
    assert dx.ravel().tolist() == [0.0, 1.0, 0.0, 0.0]


def test_padding_never_wins_a_max_pool():
    layer = expand([_input(3, 3, 1), {"type": "pool", "sx": 2, "stride": 2, "pad": 1},
                    {"type": "softmax", "num_classes": 2}])[1]
    x = -np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    out, _ = ops.pool_forward(layer, x)
    assert out[0, :, :, 0].tolist() == [[-1.0, -2.0], [-4.0, -5.0]]


def test_bad_inputs_are_rejected():
    net, params, x, labels = _problem(NETS["fc"])
    with pytest.raises(ValueError, match="params must have shape"):
        net.gradient(params[:-1], x, labels)
    with pytest.raises(ValueError, match="x must have shape"):
        net.predict(params, x.reshape(3, 5))
    with pytest.raises(ValueError, match="labels must be in"):
        net.gradient(params, x, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="labels must be 3 integers"):
        net.gradient(params, x, np.array([0.0, 1.0, 2.0]))


def test_training_processes_keep_freed_memory_for_their_next_batch():
    # The worker and the evaluator call this (Net does not: the master must not hold its peak heap).
    assert retain_freed_memory()  # glibc on the machines we run on; the speed of every batch depends on it
