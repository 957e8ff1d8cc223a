"""Named layer lists used across mlitb: the demo nets, the tests and the benchmarks import them from here.

The browser side keeps its own copies, checked against these in
tests/test_model_spec.py: the "mnist" template of static/js/templates.js (via
tests/test_browser_researcher.py) and bench/nets.json's "mnist_convnet".
"""

from __future__ import annotations

from typing import Any

# ConvNetJS's MNIST example, `mlitb serve`'s demo project: 5,994 parameters.
MNIST_CONVNET: list[dict[str, Any]] = [
    {"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
    {"type": "conv", "sx": 5, "filters": 8, "stride": 1, "pad": 2, "activation": "relu"},
    {"type": "pool", "sx": 2, "stride": 2},
    {"type": "conv", "sx": 5, "filters": 16, "stride": 1, "pad": 2, "activation": "relu"},
    {"type": "pool", "sx": 3, "stride": 3},
    {"type": "softmax", "num_classes": 10},
]

# A 784-512-10 multilayer perceptron on MNIST: 407,050 parameters.
MNIST_MLP: list[dict[str, Any]] = [
    {"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
    {"type": "fc", "num_neurons": 512, "activation": "relu"},
    {"type": "softmax", "num_classes": 10},
]

# Softmax regression on MNIST: 7,850 parameters, a gradient in milliseconds (the tests' workhorse).
MNIST_SOFTMAX: list[dict[str, Any]] = [
    {"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
    {"type": "softmax", "num_classes": 10},
]
