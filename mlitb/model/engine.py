"""The numpy engine: a net built from layer definitions, its batched gradient and its predictions.

This is the reference the JavaScript engine is pinned to and the engine of
the master's evaluation and the Python worker. It holds no parameters: they
are passed in as the flat vector, because the master owns them and ships them
to workers as one buffer. Float32 params compute in float32; float64 params
compute in float64 (for finite-difference checks and the parity vectors).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlitb.model import ops
from mlitb.model.layout import ParamBlock, build_layout, init_params, param_count
from mlitb.model.rng import mulberry32
from mlitb.model.spec import Layer, expand


@dataclass
class BatchGradient:
    """What a worker sends back: sums over its examples, so results from many workers just add."""

    grad_sum: np.ndarray  # (P,), float32 (float64 when computed in float64)
    count: int
    loss_sum: float
    correct: int


class Net:
    """A classifier described by ConvNetJS layer definitions."""

    def __init__(self, layer_defs: list[dict[str, Any]]):
        self.layer_defs: list[dict[str, Any]] = copy.deepcopy(layer_defs)
        self.layers: list[Layer] = expand(self.layer_defs)
        self.layout: list[ParamBlock] = build_layout(self.layers)
        self.param_count: int = param_count(self.layout)
        self.input_shape: tuple[int, int, int] = self.layers[0].out_shape
        self.num_classes: int = self.layers[-1].out_shape[2]
        self._blocks = {(b.layer, b.kind): b for b in self.layout}

    def init_params(self, seed: int) -> np.ndarray:
        """ConvNetJS's initialisation as a float32 (P,) vector, the same for the same seed."""
        return init_params(self.layers, self.layout, seed)

    def gradient(self, params: np.ndarray, x: np.ndarray, labels: np.ndarray, seed: int = 0) -> BatchGradient:
        """Summed softmax cross-entropy gradient over the batch, dropout masks from mulberry32(seed)."""
        params, x = self._check(params, x)
        labels = np.asarray(labels)
        if labels.shape != (x.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {x.shape[0]} integers, got shape {labels.shape} of {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")
        acts, caches = self._forward(params, x, seed, training=True)
        losses, probs = ops.cross_entropy(acts[-1].reshape(x.shape[0], -1), labels)
        dout = probs.copy()
        dout[np.arange(len(labels)), labels] -= 1
        grad = np.zeros_like(params)
        self._backward(params, grad, acts, caches, dout.reshape(acts[-1].shape))
        return BatchGradient(
            grad_sum=grad,
            count=int(x.shape[0]),
            loss_sum=float(losses.sum(dtype=np.float64)),
            correct=int((probs.argmax(axis=1) == labels).sum()),
        )

    def predict(self, params: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Class probabilities (N, num_classes), dropout off."""
        params, x = self._check(params, x)
        acts, _ = self._forward(params, x, 0, training=False)
        return ops.softmax(acts[-1].reshape(x.shape[0], -1))

    def _check(self, params: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        params = np.asarray(params)
        dtype = np.float64 if params.dtype == np.float64 else np.float32
        if params.shape != (self.param_count,):
            raise ValueError(f"params must have shape ({self.param_count},), got {params.shape}")
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        return params.astype(dtype, copy=False), np.ascontiguousarray(x, dtype=dtype)

    def _weights(self, params: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        w, b = self._blocks[(n, "weights")], self._blocks[(n, "biases")]
        return (params[w.offset:w.offset + w.size].reshape(w.shape), params[b.offset:b.offset + b.size])

    def _forward(self, params: np.ndarray, x: np.ndarray, seed: int,
                 training: bool) -> tuple[list[np.ndarray], list[Any]]:
        """Every layer's output (acts[i] is layer i's) and what its backward pass needs."""
        acts, caches = [x], [None]
        drawn = 0  # uniforms taken from the one mulberry32 stream of this call
        for n, layer in enumerate(self.layers[1:], start=1):
            a, cache = acts[-1], None
            if layer.type == "conv":
                out, cache = ops.conv_forward(layer, a, *self._weights(params, n))
            elif layer.type == "fc":
                out, cache = ops.fc_forward(a, *self._weights(params, n))
            elif layer.type == "pool":
                out, cache = ops.pool_forward(layer, a)
            elif layer.type == "dropout":
                if training:
                    u = mulberry32(seed, a.size, drawn).reshape(a.shape)
                    drawn += a.size
                    cache = (u >= layer.drop_prob) * a.dtype.type(1 / (1 - layer.drop_prob))
                    out = a * cache
                else:
                    out = a
            elif layer.type == "softmax":
                out = a  # the loss and probabilities are taken from the logits
            else:
                out = ops.activation_forward(layer.type, a)
            acts.append(out)
            caches.append(cache)
        return acts, caches

    def _backward(self, params: np.ndarray, grad: np.ndarray, acts: list[np.ndarray],
                  caches: list[Any], dout: np.ndarray) -> None:
        first = self.layout[0].layer  # nothing below the first parametric layer needs a gradient
        for n in range(len(self.layers) - 1, first - 1, -1):
            layer, need_dx = self.layers[n], n > first
            in_shape = acts[n - 1].shape
            if layer.type in ("conv", "fc"):
                w, _ = self._weights(params, n)
                dw, db = self._weights(grad, n)
                if layer.type == "conv":
                    dout = ops.conv_backward(layer, dout, caches[n], w, dw, db, in_shape, need_dx)
                else:
                    dout = ops.fc_backward(dout, caches[n], w, dw, db, in_shape, need_dx)
            elif layer.type == "pool":
                dout = ops.pool_backward(layer, dout, caches[n], in_shape)
            elif layer.type == "dropout":
                dout = dout * caches[n]
            elif layer.type in ("relu", "tanh", "sigmoid"):
                dout = ops.activation_backward(layer.type, dout, acts[n])
