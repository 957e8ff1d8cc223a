"""`mlitb export CLOSURE --format convnetjs`: the model as ConvNetJS's `Net.toJSON()` object.

Our layout is ConvNetJS's storage order, so each filter is a plain slice of
the flat vector. Vol weights are written as `{"0": w0, "1": w1, ...}`, the
way JSON.stringify writes ConvNetJS's Float64Arrays, and `Net.fromJSON`
reads them back. Dropout layers are left out: at prediction time mlitb's
inverted dropout is the identity, whereas ConvNetJS multiplies activations by
drop_prob, which would change every prediction; without them ConvNetJS gives
the same probabilities as mlitb.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from mlitb.closure import Closure, ClosureError
from mlitb.model import Net
from mlitb.model.spec import Layer
from mlitb.predict import read_closure


def _vol(sx: int, sy: int, depth: int, w: np.ndarray) -> dict[str, Any]:
    return {"sx": sx, "sy": sy, "depth": depth, "w": {str(i): float(v) for i, v in enumerate(w)}}


def _shape(layer: Layer) -> dict[str, Any]:
    out_sy, out_sx, out_depth = layer.out_shape
    return {"out_depth": out_depth, "out_sx": out_sx, "out_sy": out_sy, "layer_type": layer.type}


def _layer(net: Net, n: int, layer: Layer, params: np.ndarray) -> dict[str, Any]:
    json_layer = _shape(layer)
    if layer.type in ("conv", "fc"):
        w_block, b_block = (b for b in net.layout if b.layer == n)
        weights = params[w_block.offset:w_block.offset + w_block.size].reshape(w_block.shape[0], -1)
        if layer.type == "conv":
            json_layer.update(sx=layer.sx, sy=layer.sy, stride=layer.stride, in_depth=layer.in_shape[2],
                              pad=layer.pad)
            filters = [_vol(layer.sx, layer.sy, layer.in_shape[2], f) for f in weights]
        else:
            json_layer.update(num_inputs=layer.in_size)
            filters = [_vol(1, 1, layer.in_size, f) for f in weights]
        json_layer.update(l1_decay_mul=layer.l1_decay_mul, l2_decay_mul=layer.l2_decay_mul, filters=filters,
                          biases=_vol(1, 1, b_block.size, params[b_block.offset:b_block.offset + b_block.size]))
    elif layer.type == "pool":
        json_layer.update(sx=layer.sx, sy=layer.sy, stride=layer.stride, in_depth=layer.in_shape[2], pad=layer.pad)
    elif layer.type == "softmax":
        json_layer.update(num_inputs=layer.in_size)
    return json_layer


def to_convnetjs(closure: Closure) -> dict[str, Any]:
    """ConvNetJS `Net.toJSON()` of the closure's model, dropout layers left out (see module doc)."""
    net = closure.net()
    return {"layers": [_layer(net, n, layer, closure.params) for n, layer in enumerate(net.layers)
                       if layer.type != "dropout"]}


def run(args: argparse.Namespace) -> int:
    try:
        closure = read_closure(args.closure)
    except ClosureError as exc:
        print(f"mlitb export: {args.closure}: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(to_convnetjs(closure))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text + "\n")
    return 0
