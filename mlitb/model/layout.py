"""The flat parameter vector: where each layer's weights and biases live, and their start values.

All parameters are one float32 vector so the master, the wire and the
optimizers handle a single buffer. The order is ConvNetJS's, layer after
layer: a conv layer stores its filters (out_depth x sy x sx x in_depth) then
its biases; an fc layer stores out x num_inputs (inputs flattened in (y, x, d)
order) then its biases. Exporting to ConvNetJS is therefore a copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlitb.model.spec import Layer


@dataclass(frozen=True)
class ParamBlock:
    """One contiguous run of the flat vector: a layer's weights or its biases.

    `layer` indexes the expanded layer list; the decay multipliers are
    ConvNetJS's (weights l1 0 / l2 1 unless the definition overrides them,
    biases never decay).
    """

    layer: int
    kind: str  # "weights" or "biases"
    shape: tuple[int, ...]
    offset: int
    size: int
    l1_decay_mul: float
    l2_decay_mul: float


def build_layout(layers: list[Layer]) -> list[ParamBlock]:
    """The layout table of an expanded net, in ConvNetJS storage order."""
    blocks: list[ParamBlock] = []
    offset = 0
    for n, layer in enumerate(layers):
        out_depth = layer.out_shape[2]
        if layer.type == "conv":
            weight_shape: tuple[int, ...] = (out_depth, layer.sy, layer.sx, layer.in_shape[2])
        elif layer.type == "fc":
            weight_shape = (out_depth, layer.in_size)
        else:
            continue
        weight_size = math.prod(weight_shape)  # exact: np.prod wraps around int64 on absurd shapes
        blocks.append(ParamBlock(n, "weights", weight_shape, offset, weight_size, layer.l1_decay_mul, layer.l2_decay_mul))
        offset += weight_size
        blocks.append(ParamBlock(n, "biases", (out_depth,), offset, out_depth, 0.0, 0.0))
        offset += out_depth
    return blocks


def param_count(layout: list[ParamBlock]) -> int:
    """P, the length of the flat vector."""
    return layout[-1].offset + layout[-1].size if layout else 0


def init_params(layers: list[Layer], layout: list[ParamBlock], seed: int) -> np.ndarray:
    """ConvNetJS's initialisation, deterministic from `seed`.

    Weights are gaussian with std sqrt(1/fan_in) (fan_in = sx*sy*in_depth for
    conv, num_inputs for fc) so every unit starts with unit-scale output;
    biases start at the layer's bias_pref (0.1 before a relu, else 0).
    """
    rng = np.random.default_rng(seed)
    params = np.empty(param_count(layout), dtype=np.float32)
    for block in layout:
        view = params[block.offset:block.offset + block.size]
        if block.kind == "weights":
            fan_in = block.size // block.shape[0]
            view[:] = rng.normal(0.0, np.sqrt(1.0 / fan_in), block.size)
        else:
            view[:] = layers[block.layer].bias_pref
    return params


def decay_multipliers(layout: list[ParamBlock], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-element (l1, l2) decay multipliers over the flat vector, for the optimizers."""
    l1 = np.zeros(count, dtype=np.float32)
    l2 = np.zeros(count, dtype=np.float32)
    for block in layout:
        l1[block.offset:block.offset + block.size] = block.l1_decay_mul
        l2[block.offset:block.offset + block.size] = block.l2_decay_mul
    return l1, l2
