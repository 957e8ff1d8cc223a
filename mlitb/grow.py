"""A new class grows the net: the softmax's fc layer gains one output per new class.

MLitB's tracking mode: "a new output neuron is added dynamically to the
neural network if the label is also new". The parameter vector keeps its
ConvNetJS order, so the new outputs are new rows at the end of the last fc
layer's weight block (out x num_inputs) and new entries at the end of its
biases; everything before them keeps its offset. New weights are drawn like
a fresh net's (gaussian, std sqrt(1/fan_in)), new biases take the layer's
bias_pref, and optimizer state arrays gain zeros there (a new output starts
with no history; Adam's step count `t` is the project's and stays).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlitb.model import Net


def grow_classes(layers: list[dict[str, Any]], params: np.ndarray, state: Mapping[str, np.ndarray], num_classes: int,
                 seed: int) -> tuple[list[dict[str, Any]], np.ndarray, dict[str, np.ndarray]]:
    """(layers, params, optimizer state) of the net with `num_classes` outputs instead of its current count."""
    old = Net(layers)
    added = num_classes - old.num_classes
    if added < 1:
        raise ValueError(f"the net already has {old.num_classes} classes; growing needs more than that, got {num_classes}")
    grown = copy.deepcopy(layers)
    grown[-1]["num_classes"] = num_classes
    new = Net(grown)
    fan_in = old.layout[-2].shape[1]
    rng = np.random.default_rng(seed)
    rows = rng.normal(0.0, np.sqrt(1.0 / fan_in), (added, fan_in)).astype(np.float32)
    bias = np.full(added, new.layers[new.layout[-1].layer].bias_pref, np.float32)
    new_state = {key: widen(np.asarray(value, np.float32), old, new)
                 if np.shape(value) == (old.param_count,) else np.array(value, np.float32)
                 for key, value in state.items()}
    return grown, widen(params, old, new, rows, bias), new_state


def widen(vector: np.ndarray, old: Net, new: Net, new_rows: np.ndarray | None = None,
          new_biases: np.ndarray | None = None) -> np.ndarray:
    """A vector over `old`'s parameters laid out over `new`'s (the same net with more outputs): everything
    kept at its place, the new outputs' weights and biases from `new_rows` / `new_biases` (default 0)."""
    weights, biases = old.layout[-2], old.layout[-1]  # the softmax's fc: the last parameter blocks
    fan_in = weights.shape[1]
    added = new.num_classes - old.num_classes
    rows = np.zeros((added, fan_in), np.float32) if new_rows is None else new_rows
    extra = np.zeros(added, np.float32) if new_biases is None else new_biases
    out = np.empty(new.param_count, np.float32)
    out[:weights.offset] = vector[:weights.offset]
    block = vector[weights.offset:weights.offset + weights.size].reshape(old.num_classes, fan_in)
    end = weights.offset + new.num_classes * fan_in
    out[weights.offset:end] = np.concatenate([block, rows]).ravel()
    out[end:] = np.concatenate([vector[biases.offset:biases.offset + biases.size], extra])
    return out
