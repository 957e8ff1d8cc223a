"""Layer definitions in ConvNetJS's `layer_defs` vocabulary: validation, expansion, shapes.

A researcher pastes ConvNetJS layer definitions; we expand them exactly as
ConvNetJS's `Net.makeLayers` desugars them (softmax gets its fc, `activation`
and `drop_prob` become their own layers, relu-fed layers get bias 0.1), so the
parameter count and storage order match ConvNetJS and export is a copy.
Errors name the index of the user's definition (not of the expanded list),
the field and what is allowed, because that is what the person can fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Shape = tuple[int, int, int]  # (sy, sx, depth)

ACTIVATIONS = ("relu", "tanh", "sigmoid")
LAYER_TYPES = ("input", "conv", "pool", "fc", "relu", "tanh", "sigmoid", "dropout", "softmax")

# Fields a definition of each type may carry; anything else is a typo we report.
ALLOWED_FIELDS: dict[str, tuple[str, ...]] = {
    "input": ("out_sx", "out_sy", "out_depth"),
    "conv": ("sx", "sy", "filters", "stride", "pad", "activation", "drop_prob",
             "bias_pref", "l1_decay_mul", "l2_decay_mul"),
    "pool": ("sx", "sy", "stride", "pad"),
    "fc": ("num_neurons", "activation", "drop_prob", "bias_pref", "l1_decay_mul", "l2_decay_mul"),
    "relu": (),
    "tanh": (),
    "sigmoid": (),
    "dropout": ("drop_prob",),
    "softmax": ("num_classes",),
}


class SpecError(ValueError):
    """A layer definition that cannot be built; `.index` and `.field` locate it for an API reply."""

    def __init__(self, index: int | None, field: str | None, message: str, layer_type: str | None = None):
        where = "layers" if index is None else f"layer {index}" + (f" ({layer_type})" if layer_type else "")
        text = f"{where}: '{field}' {message}" if field else f"{where}: {message}"
        super().__init__(text)
        self.index = index
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Layer:
    """One expanded layer: what the engines compute, with every shape resolved.

    `index` is the position of the user's definition this layer came from.
    """

    type: str
    index: int
    in_shape: Shape
    out_shape: Shape
    sx: int = 0
    sy: int = 0
    stride: int = 1
    pad: int = 0
    bias_pref: float = 0.0
    l1_decay_mul: float = 0.0
    l2_decay_mul: float = 1.0
    drop_prob: float = 0.0

    @property
    def in_size(self) -> int:
        sy, sx, depth = self.in_shape
        return sy * sx * depth


def _positive_int(d: dict[str, Any], i: int, field: str, default: int | None = None) -> int:
    value = d.get(field, default)
    if value is None:
        raise SpecError(i, field, "is required: a positive integer", d.get("type"))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(i, field, f"must be a positive integer, got {value!r}", d.get("type"))
    return value


def _nonnegative_int(d: dict[str, Any], i: int, field: str) -> int:
    value = d.get(field, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(i, field, f"must be a non-negative integer, got {value!r}", d.get("type"))
    return value


def _finite_number(d: dict[str, Any], i: int, field: str, default: float) -> float:
    value = d.get(field, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(i, field, f"must be a finite number, got {value!r}", d.get("type"))
    return float(value)


def _drop_prob(d: dict[str, Any], i: int, default: float) -> float:
    p = _finite_number(d, i, "drop_prob", default)
    if not 0.0 <= p < 1.0:
        raise SpecError(i, "drop_prob", f"must be in [0, 1), got {p!r}", d.get("type"))
    return p


def _window_out(d: dict[str, Any], i: int, field: str, size: int, window: int, stride: int, pad: int) -> int:
    out = (size + 2 * pad - window) // stride + 1
    if out < 1:
        raise SpecError(i, field, f"window {window} with pad {pad} does not fit an input of size {size}", d.get("type"))
    return out


def _windowed(d: dict[str, Any], i: int, in_shape: Shape, default_stride: int) -> tuple[int, int, int, int, int, int]:
    """sx, sy, stride, pad and output height/width of a conv or pool definition."""
    sx = _positive_int(d, i, "sx")
    sy = _positive_int(d, i, "sy", sx)
    stride = _positive_int(d, i, "stride", default_stride)
    pad = _nonnegative_int(d, i, "pad")
    out_sy = _window_out(d, i, "sy", in_shape[0], sy, stride, pad)
    out_sx = _window_out(d, i, "sx", in_shape[1], sx, stride, pad)
    return sx, sy, stride, pad, out_sy, out_sx


def _check_fields(d: Any, i: int) -> str:
    if not isinstance(d, dict):
        raise SpecError(i, None, f"must be an object with a 'type', got {type(d).__name__}")
    kind = d.get("type")
    if kind not in LAYER_TYPES:
        raise SpecError(i, "type", f"must be one of {', '.join(LAYER_TYPES)}, got {kind!r}")
    allowed = ALLOWED_FIELDS[kind]
    for field in d:
        if field != "type" and field not in allowed:
            choices = ", ".join(allowed) if allowed else "no other fields"
            raise SpecError(i, field, f"is not a field of a {kind} layer (allowed: {choices})", kind)
    if "activation" in d and d["activation"] not in ACTIVATIONS:
        raise SpecError(i, "activation", f"must be one of {', '.join(ACTIVATIONS)}, got {d['activation']!r}", kind)
    return kind


def expand(layer_defs: Any) -> list[Layer]:
    """Validate ConvNetJS layer definitions and expand them as ConvNetJS's desugar does."""
    if not isinstance(layer_defs, list) or len(layer_defs) < 2:
        raise SpecError(None, None, "must be a list of at least an input and a softmax layer definition")
    layers: list[Layer] = []
    shape: Shape = (0, 0, 0)
    last = len(layer_defs) - 1
    for i, d in enumerate(layer_defs):
        kind = _check_fields(d, i)
        if (kind == "input") != (i == 0):
            raise SpecError(i, "type", "must be 'input' for the first layer only", kind)
        if (kind == "softmax") != (i == last):
            raise SpecError(i, "type", "must be 'softmax' for the last layer only", kind)
        if kind == "input":
            shape = (_positive_int(d, i, "out_sy"), _positive_int(d, i, "out_sx"), _positive_int(d, i, "out_depth"))
            layers.append(Layer("input", i, shape, shape))
            continue
        if kind in ("conv", "fc"):
            relu_bias = 0.1 if d.get("activation") == "relu" else 0.0
            common = dict(
                bias_pref=_finite_number(d, i, "bias_pref", relu_bias),
                l1_decay_mul=_finite_number(d, i, "l1_decay_mul", 0.0),
                l2_decay_mul=_finite_number(d, i, "l2_decay_mul", 1.0),
            )
            if kind == "conv":
                filters = _positive_int(d, i, "filters")
                sx, sy, stride, pad, out_sy, out_sx = _windowed(d, i, shape, 1)
                out = (out_sy, out_sx, filters)
                layers.append(Layer("conv", i, shape, out, sx=sx, sy=sy, stride=stride, pad=pad, **common))
            else:
                out = (1, 1, _positive_int(d, i, "num_neurons"))
                layers.append(Layer("fc", i, shape, out, **common))
            shape = out
            if "activation" in d:
                layers.append(Layer(d["activation"], i, shape, shape))
            if "drop_prob" in d:
                layers.append(Layer("dropout", i, shape, shape, drop_prob=_drop_prob(d, i, 0.5)))
        elif kind == "pool":
            sx, sy, stride, pad, out_sy, out_sx = _windowed(d, i, shape, 2)
            if pad >= sx or pad >= sy:
                raise SpecError(i, "pad", f"must be smaller than the window ({sx}x{sy}) so every window sees the input, got {pad}", kind)
            out = (out_sy, out_sx, shape[2])
            layers.append(Layer("pool", i, shape, out, sx=sx, sy=sy, stride=stride, pad=pad))
            shape = out
        elif kind == "dropout":
            layers.append(Layer("dropout", i, shape, shape, drop_prob=_drop_prob(d, i, 0.5)))
        elif kind in ACTIVATIONS:
            layers.append(Layer(kind, i, shape, shape))
        else:  # softmax: ConvNetJS puts an fc of num_classes in front of it
            classes = d.get("num_classes")
            if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
                raise SpecError(i, "num_classes", f"must be an integer of at least 2, got {classes!r}", kind)
            out = (1, 1, classes)
            layers.append(Layer("fc", i, shape, out))
            layers.append(Layer("softmax", i, out, out))
    return layers
