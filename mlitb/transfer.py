"""Transfer learning: a new project's layers and parameters taken from a trained closure.

MLitB's promise: "start with a pre-trained image classifier, remove the last
layer, and easily train a new image classifier". With `head="replace"` every
layer keeps its trained parameters except the softmax's fc layer (the last
two parameter blocks), which is re-initialised for the new class count the
way a fresh net is (from the new project's seed). Without it, the whole net is
kept (fine-tuning on data with the same classes). The input shape must match:
the trained filters only mean something on images of the shape they saw.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from mlitb.closure import Closure
from mlitb.model import Net
from mlitb.validate import FieldError

HEADS = ("replace",)


def transfer(closure: Closure, input_shape: tuple[int, int, int], num_classes: int, head: str | None,
             seed: int) -> tuple[list[dict[str, Any]], np.ndarray]:
    """(layers, params) of a new project on a dataset of `input_shape` images and `num_classes` classes."""
    if head is not None and head not in HEADS:
        raise FieldError("head", f"must be \"replace\" (re-initialise the last layer for the new classes) or absent "
                                 f"(keep every layer), got {head!r}")
    old = closure.net()
    if list(old.input_shape) != list(input_shape):
        h, w, d = old.input_shape
        raise FieldError("dataset", f"the closure's net takes {h}x{w}x{d} inputs (height x width x depth) but the "
                                    f"dataset holds {'x'.join(map(str, input_shape))} images; transfer keeps the trained "
                                    f"layers, so the input shape must match: upload the data again resized to it "
                                    f"(mlitb data add ZIP --size {w}x{h} --channels {d})")
    if head is None:
        if old.num_classes != num_classes:
            raise FieldError("head", f"the closure's net has {old.num_classes} classes, the dataset {num_classes}: "
                                     "set head to \"replace\" to train a new last layer for them")
        return copy.deepcopy(closure.layers), closure.params.copy()
    layers = copy.deepcopy(closure.layers)
    layers[-1]["num_classes"] = num_classes
    new = Net(layers)
    params = new.init_params(seed)
    head_layer = new.layout[-1].layer  # the softmax's fc: its weights and biases are the last two blocks
    for before, after in zip(old.layout, new.layout):
        if after.layer == head_layer:
            continue
        params[after.offset:after.offset + after.size] = closure.params[before.offset:before.offset + before.size]
    return layers, params
