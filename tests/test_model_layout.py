"""The flat parameter layout and ConvNetJS initialisation."""

from __future__ import annotations

import numpy as np

from mlitb.model import Net, ParamBlock

DEFS = [
    {"type": "input", "out_sx": 5, "out_sy": 4, "out_depth": 3},
    {"type": "conv", "sx": 3, "filters": 6, "pad": 1, "activation": "relu", "l1_decay_mul": 0.5},
    {"type": "pool", "sx": 2, "stride": 2},
    {"type": "fc", "num_neurons": 7, "l2_decay_mul": 2.0},
    {"type": "softmax", "num_classes": 3},
]


def test_layout_is_convnetjs_storage_order():
    net = Net(DEFS)
    # conv 4x5x3 -> (4,5,6); pool -> (2,2,6); fc 24 -> 7; softmax's fc 7 -> 3
    assert net.layout == [
        ParamBlock(1, "weights", (6, 3, 3, 3), 0, 162, 0.5, 1.0),
        ParamBlock(1, "biases", (6,), 162, 6, 0.0, 0.0),
        ParamBlock(4, "weights", (7, 24), 168, 168, 0.0, 2.0),
        ParamBlock(4, "biases", (7,), 336, 7, 0.0, 0.0),
        ParamBlock(5, "weights", (3, 7), 343, 21, 0.0, 1.0),
        ParamBlock(5, "biases", (3,), 364, 3, 0.0, 0.0),
    ]
    assert net.param_count == 367


def test_init_is_deterministic_and_scaled_like_convnetjs():
    net = Net(DEFS)
    a, b = net.init_params(3), net.init_params(3)
    assert a.dtype == np.float32 and a.shape == (net.param_count,)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, net.init_params(4))
    conv_w, conv_b, fc_w, fc_b = (a[blk.offset:blk.offset + blk.size] for blk in net.layout[:4])
    assert np.all(conv_b == np.float32(0.1))  # bias_pref before relu
    assert np.all(fc_b == 0.0)


def test_init_std_is_sqrt_one_over_fan_in():
    net = Net([{"type": "input", "out_sx": 10, "out_sy": 10, "out_depth": 4},
               {"type": "conv", "sx": 5, "filters": 200}, {"type": "softmax", "num_classes": 2}])
    params = net.init_params(0)
    weights = params[:net.layout[0].size]
    assert abs(weights.std() - np.sqrt(1 / 100)) < 0.003
    assert abs(weights.mean()) < 0.003
