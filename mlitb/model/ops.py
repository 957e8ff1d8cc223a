"""Batched forward and backward kernels of each layer type, on (N, sy, sx, depth) arrays.

Arrays are interleaved exactly like ConvNetJS volumes (`((sx*y)+x)*depth+d`
per example), so a C-ordered (N, H, W, C) array *is* the wire layout and no
transposes are needed at the borders. Convolution is im2col + one matmul;
the scatter back (col2im) and pooling loop over the few window offsets, never
over examples. Every function works in the dtype it is given (float32 for
training, float64 for gradient checks).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from mlitb.model.spec import Layer


def _pad(x: np.ndarray, pad: int, value: float) -> np.ndarray:
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=value)


def _windows(xp: np.ndarray, layer: Layer) -> np.ndarray:
    """A read-only (N, out_sy, out_sx, sy, sx, C) view of every window of the padded input."""
    n, _, _, c = xp.shape
    out_sy, out_sx, _ = layer.out_shape
    s_n, s_h, s_w, s_c = xp.strides
    return as_strided(
        xp,
        shape=(n, out_sy, out_sx, layer.sy, layer.sx, c),
        strides=(s_n, s_h * layer.stride, s_w * layer.stride, s_h, s_w, s_c),
        writeable=False,
    )


def _scatter_windows(dwin: np.ndarray, layer: Layer, in_shape: tuple[int, ...]) -> np.ndarray:
    """Adjoint of `_windows`: add each window's gradient back onto the input it was read from."""
    n, h, w, c = in_shape
    out_sy, out_sx, _ = layer.out_shape
    p, s = layer.pad, layer.stride
    dxp = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=dwin.dtype)
    for ky in range(layer.sy):
        for kx in range(layer.sx):
            dxp[:, ky:ky + s * (out_sy - 1) + 1:s, kx:kx + s * (out_sx - 1) + 1:s, :] += dwin[:, :, :, ky, kx, :]
    return dxp[:, p:p + h, p:p + w, :]


def conv_forward(layer: Layer, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convolution as one matmul over im2col columns ordered (sy, sx, in_depth) like the filters."""
    out_sy, out_sx, out_depth = layer.out_shape
    cols = _windows(_pad(x, layer.pad, 0.0), layer).reshape(-1, layer.sy * layer.sx * x.shape[3])
    out = cols @ w.reshape(out_depth, -1).T
    out += b
    return out.reshape(x.shape[0], out_sy, out_sx, out_depth), cols


def conv_backward(layer: Layer, dout: np.ndarray, cols: np.ndarray, w: np.ndarray,
                  dw: np.ndarray, db: np.ndarray, in_shape: tuple[int, ...], need_dx: bool) -> np.ndarray | None:
    out_depth = layer.out_shape[2]
    d2 = dout.reshape(-1, out_depth)
    dw[:] = (d2.T @ cols).reshape(dw.shape)
    db[:] = d2.sum(axis=0)
    if not need_dx:
        return None
    dcols = (d2 @ w.reshape(out_depth, -1)).reshape(dout.shape[:3] + (layer.sy, layer.sx, in_shape[3]))
    return _scatter_windows(dcols, layer, in_shape)


def pool_forward(layer: Layer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max over the in-bounds cells of each window (padding never wins).

    Ties go to the first maximum in row-major window order (y outer, x inner);
    the JS engine follows the same rule, so both route the gradient to the same cell.
    """
    n, _, _, c = x.shape
    out_sy, out_sx, _ = layer.out_shape
    win = _windows(_pad(x, layer.pad, -np.inf), layer).reshape(n, out_sy, out_sx, layer.sy * layer.sx, c)
    arg = win.argmax(axis=3)
    out = np.take_along_axis(win, arg[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    return out, arg


def pool_backward(layer: Layer, dout: np.ndarray, arg: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    zero = dout.dtype.type(0)
    dwin = np.stack([np.where(arg == k, dout, zero) for k in range(layer.sy * layer.sx)], axis=3)
    return _scatter_windows(dwin.reshape(dout.shape[:3] + (layer.sy, layer.sx, dout.shape[3])), layer, in_shape)


def fc_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fully connected on the input flattened in (y, x, d) order, ConvNetJS's num_inputs order."""
    flat = x.reshape(x.shape[0], -1)
    out = flat @ w.T
    out += b
    return out.reshape(x.shape[0], 1, 1, -1), flat


def fc_backward(dout: np.ndarray, flat: np.ndarray, w: np.ndarray, dw: np.ndarray, db: np.ndarray,
                in_shape: tuple[int, ...], need_dx: bool) -> np.ndarray | None:
    d2 = dout.reshape(dout.shape[0], -1)
    dw[:] = d2.T @ flat
    db[:] = d2.sum(axis=0)
    return (d2 @ w).reshape(in_shape) if need_dx else None


def activation_forward(kind: str, x: np.ndarray) -> np.ndarray:
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "tanh":
        return np.tanh(x)
    return 1 / (1 + np.exp(-x))


def activation_backward(kind: str, dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Gradient from the layer's output alone, as ConvNetJS does (relu passes where out > 0)."""
    if kind == "relu":
        return np.where(out > 0, dout, 0).astype(dout.dtype, copy=False)
    if kind == "tanh":
        return dout * (1 - out * out)
    return dout * out * (1 - out)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example -log p[label] (through log-sum-exp, so it never overflows) and the probabilities."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    losses = np.log(total[:, 0]) - z[np.arange(len(labels)), labels]
    return losses, e / total
