"""Layer definitions: ConvNetJS expansion, output shapes, and errors that say what to fix."""

from __future__ import annotations

import json

import pytest

from mlitb.model import Net, SpecError
from mlitb.model.spec import expand
from mlitb.model.zoo import MNIST_CONVNET
from tests.helpers import REPO

INPUT = {"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1}
SOFTMAX = {"type": "softmax", "num_classes": 10}


def test_expansion_follows_convnetjs_desugar():
    layers = expand([
        INPUT,
        {"type": "conv", "sx": 5, "filters": 8, "pad": 2, "activation": "relu"},
        {"type": "fc", "num_neurons": 20, "activation": "tanh", "drop_prob": 0.3},
        SOFTMAX,
    ])
    assert [(layer.type, layer.index) for layer in layers] == [
        ("input", 0), ("conv", 1), ("relu", 1), ("fc", 2), ("tanh", 2), ("dropout", 2), ("fc", 3), ("softmax", 3)]
    assert layers[1].bias_pref == 0.1  # relu after it
    assert layers[3].bias_pref == 0.0
    assert layers[5].drop_prob == 0.3
    assert layers[6].out_shape == (1, 1, 10) and layers[6].bias_pref == 0.0


def test_mnist_convnet_shapes_and_param_count():
    net = Net(MNIST_CONVNET)
    assert [layer.out_shape for layer in net.layers] == [
        (28, 28, 1), (28, 28, 8), (28, 28, 8), (14, 14, 8), (14, 14, 16), (14, 14, 16), (4, 4, 16),
        (1, 1, 10), (1, 1, 10)]
    assert net.param_count == (8 * 25 + 8) + (16 * 200 + 16) + (10 * 256 + 10)
    assert net.input_shape == (28, 28, 1) and net.num_classes == 10


def test_the_js_benchmark_runs_the_same_convnet():
    """bench/nets.json is the JS side's copy of the zoo's MNIST convnet (stride 1 left to its default)."""
    nets = json.loads((REPO / "bench" / "nets.json").read_text())
    assert expand(nets["mnist_convnet"]) == expand(MNIST_CONVNET)


def test_non_square_shapes_stride_pad_and_defaults():
    layers = expand([
        {"type": "input", "out_sx": 7, "out_sy": 5, "out_depth": 3},
        {"type": "conv", "sx": 3, "sy": 2, "filters": 4, "stride": 2, "pad": 1},
        {"type": "pool", "sx": 2},  # stride defaults to 2
        {"type": "softmax", "num_classes": 2},
    ])
    # conv: y floor((5+2-2)/2)+1 = 3, x floor((7+2-3)/2)+1 = 4; pool: (3-2)//2+1 = 1, (4-2)//2+1 = 2
    assert layers[1].out_shape == (3, 4, 4)
    assert layers[2].out_shape == (1, 2, 4) and layers[2].stride == 2 and layers[2].sy == 2


@pytest.mark.parametrize("defs,index,field,words", [
    ([INPUT, {"type": "conv", "sx": 5, "filters": -3}, SOFTMAX], 1, "filters",
     "layer 1 (conv): 'filters' must be a positive integer, got -3"),
    ([INPUT, {"type": "conv", "filters": 3}, SOFTMAX], 1, "sx", "is required"),
    ([INPUT, {"type": "conv", "sx": 3, "filters": 3, "pad": 1.5}, SOFTMAX], 1, "pad", "non-negative integer"),
    ([INPUT, {"type": "fc", "num_neurons": 4, "activation": "softplus"}, SOFTMAX], 1, "activation",
     "relu, tanh, sigmoid"),
    ([INPUT, {"type": "dropout", "drop_prob": 1.0}, SOFTMAX], 1, "drop_prob", "[0, 1)"),
    ([INPUT, {"type": "pool", "sx": 40}, SOFTMAX], 1, "sy", "does not fit"),
    ([INPUT, {"type": "pool", "sx": 2, "pad": 2}, SOFTMAX], 1, "pad", "smaller than the window"),
    ([INPUT, {"type": "lrn"}, SOFTMAX], 1, "type", "must be one of input, conv"),
    ([INPUT, {"type": "fc", "num_neuron": 4}, SOFTMAX], 1, "num_neuron", "allowed: num_neurons"),
    ([INPUT, {"type": "conv", "sx": 3, "filters": 2, "bias_pref": float("nan")}, SOFTMAX], 1, "bias_pref", "finite"),
    ([{"type": "fc", "num_neurons": 3}, SOFTMAX], 0, "type", "'input' for the first layer"),
    ([INPUT, SOFTMAX, {"type": "relu"}], 1, "type", "'softmax' for the last layer"),
    ([INPUT, {"type": "softmax", "num_classes": 1}], 1, "num_classes", "at least 2"),
    ([{"type": "input", "out_sx": 0, "out_sy": 2, "out_depth": 1}, SOFTMAX], 0, "out_sx", "positive integer"),
    ([INPUT, "conv", SOFTMAX], 1, None, "must be an object"),
])
def test_bad_spec_names_layer_field_and_what_is_allowed(defs, index, field, words):
    with pytest.raises(SpecError) as caught:
        Net(defs)
    assert caught.value.index == index
    assert caught.value.field == field
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"layer {index}")


def test_too_few_layers_is_rejected():
    with pytest.raises(SpecError, match="at least an input and a softmax"):
        Net([INPUT])


def test_net_does_not_modify_the_callers_defs():
    defs = [INPUT, {"type": "fc", "num_neurons": 4, "activation": "relu"}, SOFTMAX]
    before = repr(defs)
    Net(defs)
    assert repr(defs) == before
