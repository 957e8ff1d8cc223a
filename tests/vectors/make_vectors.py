"""Write the cross-engine parity vectors: `python tests/vectors/make_vectors.py`.

Each vector pins one net: layer defs, float32 params and batch, and what the
numpy engine computes from exactly those float32 values in float64 (stored
as float32). The JavaScript engine (tests/js) and pytest both check against
them. Format of `<name>.json`:

    {"name", "layers" (ConvNetJS layer_defs), "n", "seed" (mulberry32 seed of the
     dropout masks), "param_count", "params" (base64 float32 LE, P),
     "x" (base64 float32 LE, n*sy*sx*depth interleaved), "labels" [int],
     "expected": {"count", "loss_sum", "correct",
                  "grad_sum" (base64 float32 LE, P), "probs" (base64 float32 LE, n*classes)}}

Rules both engines follow and these vectors pin: inverted dropout, the mask
drawn from ONE mulberry32 stream per gradient call (seed taken mod 2**32),
dropout layers in forward order each drawing n*size uniforms in flattened
(example, activation) order, a unit dropped when u < drop_prob; max-pool ties
go to the first maximum in row-major window order (y outer, x inner); relu
passes gradient where its output > 0; `probs` are predict's (dropout off).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from mlitb.model import Net  # noqa: E402
from mlitb.model.zoo import MNIST_CONVNET  # noqa: E402


def _input(sx: int, sy: int, depth: int) -> dict[str, Any]:
    return {"type": "input", "out_sx": sx, "out_sy": sy, "out_depth": depth}


# name -> (layer defs, batch size, dropout seed)
CASES: dict[str, tuple[list[dict[str, Any]], int, int]] = {
    "fc_relu": ([_input(1, 1, 6), {"type": "fc", "num_neurons": 7, "activation": "relu"},
                 {"type": "softmax", "num_classes": 4}], 5, 0),
    "fc_tanh_sigmoid_nonsquare": ([_input(3, 2, 2), {"type": "fc", "num_neurons": 5, "activation": "tanh"},
                                   {"type": "fc", "num_neurons": 4, "activation": "sigmoid"},
                                   {"type": "softmax", "num_classes": 3}], 4, 0),
    "conv_basic": ([_input(5, 5, 1), {"type": "conv", "sx": 3, "filters": 2},
                    {"type": "softmax", "num_classes": 3}], 3, 0),
    "conv_stride2_pad_depth3": ([_input(7, 6, 3), {"type": "conv", "sx": 3, "filters": 4, "stride": 2, "pad": 1,
                                                   "activation": "relu"},
                                 {"type": "softmax", "num_classes": 3}], 3, 0),
    "conv_rect_filter_layers": ([_input(6, 5, 2), {"type": "conv", "sx": 3, "sy": 2, "filters": 3},
                                 {"type": "relu"}, {"type": "fc", "num_neurons": 5}, {"type": "tanh"},
                                 {"type": "fc", "num_neurons": 4}, {"type": "sigmoid"},
                                 {"type": "softmax", "num_classes": 2}], 3, 0),
    "pool_basic": ([_input(6, 6, 2), {"type": "conv", "sx": 3, "filters": 3, "pad": 1},
                    {"type": "pool", "sx": 2, "stride": 2},
                    {"type": "softmax", "num_classes": 3}], 3, 0),
    "pool_pad_overlap": ([_input(7, 5, 2), {"type": "conv", "sx": 3, "filters": 3, "pad": 1, "activation": "sigmoid"},
                          {"type": "pool", "sx": 3, "stride": 2, "pad": 1},
                          {"type": "softmax", "num_classes": 3}], 3, 0),
    "dropout": ([_input(4, 4, 2), {"type": "conv", "sx": 3, "filters": 3, "pad": 1, "activation": "relu",
                                   "drop_prob": 0.25},
                 {"type": "pool", "sx": 2, "stride": 2},
                 {"type": "fc", "num_neurons": 6, "activation": "relu", "drop_prob": 0.5},
                 {"type": "dropout", "drop_prob": 0.2},
                 {"type": "softmax", "num_classes": 3}], 4, 3000000000),
    "mlp_small": ([_input(8, 8, 1), {"type": "fc", "num_neurons": 16, "activation": "relu"},
                   {"type": "softmax", "num_classes": 10}], 4, 0),
    "mnist_convnet": (MNIST_CONVNET, 8, 0),
}


def b64(a: np.ndarray) -> str:
    """Base64 of little-endian float32 bytes, the encoding of every float array in the vectors."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def make_vector(name: str, layers: list[dict[str, Any]], n: int, seed: int) -> dict[str, Any]:
    """One vector; params are ConvNetJS init plus noise so biases and weights are all generic."""
    net = Net(layers)
    rng = np.random.default_rng(sum(map(ord, name)))  # stable across runs, unlike hash()
    params = (net.init_params(7) + rng.normal(0.0, 0.05, net.param_count)).astype(np.float32)
    x = rng.normal(0.0, 1.0, (n,) + net.input_shape).astype(np.float32)
    labels = rng.integers(0, net.num_classes, n)
    g = net.gradient(params.astype(np.float64), x.astype(np.float64), labels, seed=seed)
    probs = net.predict(params.astype(np.float64), x.astype(np.float64))
    return {
        "name": name,
        "layers": layers,
        "n": n,
        "seed": seed,
        "param_count": net.param_count,
        "params": b64(params),
        "x": b64(x),
        "labels": [int(v) for v in labels],
        "expected": {
            "count": g.count,
            "loss_sum": g.loss_sum,
            "correct": g.correct,
            "grad_sum": b64(g.grad_sum),
            "probs": b64(probs),
        },
    }


def all_vectors() -> list[dict[str, Any]]:
    return [make_vector(name, layers, n, seed) for name, (layers, n, seed) in CASES.items()]


def main() -> None:
    for vector in all_vectors():
        path = HERE / f"{vector['name']}.json"
        path.write_text(json.dumps(vector, indent=1) + "\n")
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
