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


def _offsets(layer: Layer) -> list[tuple[int, slice, slice]]:
    """Each window offset k = ky*sx + kx with the strided slice of the padded input it reads."""
    out_sy, out_sx, _ = layer.out_shape
    s = layer.stride
    return [(ky * layer.sx + kx, slice(ky, ky + s * (out_sy - 1) + 1, s), slice(kx, kx + s * (out_sx - 1) + 1, s))
            for ky in range(layer.sy) for kx in range(layer.sx)]


def _im2col(layer: Layer, xp: np.ndarray) -> np.ndarray:
    """(N*out_sy*out_sx, sy*sx*C) patches of the padded input, columns ordered like the filters.

    With one input channel the windows are gathered one offset at a time into
    a (K, M) buffer and returned transposed (BLAS takes either order), because
    copying a strided view with length-1 inner runs is several times slower.
    """
    n, _, _, c = xp.shape
    out_sy, out_sx, _ = layer.out_shape
    if c == 1:
        cols = np.empty((layer.sy * layer.sx, n, out_sy, out_sx), dtype=xp.dtype)
        for k, ys, xs in _offsets(layer):
            cols[k] = xp[:, ys, xs, 0]
        return cols.reshape(layer.sy * layer.sx, -1).T
    s_n, s_h, s_w, s_c = xp.strides
    windows = as_strided(
        xp,
        shape=(n, out_sy, out_sx, layer.sy, layer.sx, c),
        strides=(s_n, s_h * layer.stride, s_w * layer.stride, s_h, s_w, s_c),
        writeable=False,
    )
    return windows.reshape(-1, layer.sy * layer.sx * c)


def conv_forward(layer: Layer, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convolution as one matmul over im2col columns."""
    out_sy, out_sx, out_depth = layer.out_shape
    cols = _im2col(layer, _pad(x, layer.pad, 0.0))
    out = cols @ w.reshape(out_depth, -1).T
    out += b
    return out.reshape(x.shape[0], out_sy, out_sx, out_depth), cols


def conv_backward(layer: Layer, dout: np.ndarray, cols: np.ndarray, w: np.ndarray,
                  dw: np.ndarray, db: np.ndarray, in_shape: tuple[int, ...], need_dx: bool) -> np.ndarray | None:
    """Filter and bias gradients by matmul; the input gradient by one matmul and a scatter per window offset.

    The column gradients are formed transposed, (sy, sx, C, N, out_sy, out_sx),
    and added into a (C, N, H, W) buffer, so every add runs over contiguous
    rows instead of C-long runs (several times faster); one transpose at the end.
    """
    n, h, wd, c = in_shape
    out_sy, out_sx, out_depth = layer.out_shape
    d2 = dout.reshape(-1, out_depth)
    dw[:] = (cols.T @ d2).T.reshape(dw.shape)  # this orientation keeps BLAS fast for either cols layout
    db[:] = np.ones(d2.shape[0], dtype=d2.dtype) @ d2  # a BLAS call; a column sum is ~20x slower here
    if not need_dx:
        return None
    p = layer.pad
    dcols = (w.reshape(out_depth, -1).T @ d2.T).reshape(layer.sy * layer.sx, c, n, out_sy, out_sx)
    dxp = np.zeros((c, n, h + 2 * p, wd + 2 * p), dtype=dout.dtype)
    for k, ys, xs in _offsets(layer):
        dxp[:, :, ys, xs] += dcols[k]
    return dxp[:, :, p:p + h, p:p + wd].transpose(1, 2, 3, 0)


def pool_forward(layer: Layer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max over the in-bounds cells of each window (padding is -inf, so it never wins).

    Ties go to the first maximum in row-major window order (y outer, x inner);
    the JS engine follows the same rule, so both route the gradient to the same
    cell. `arg` holds the winning offset; later offsets only win when strictly
    greater, so a running maximum of k * (v > best) tracks the first winner.
    """
    xp = _pad(x, layer.pad, -np.inf)
    offsets = _offsets(layer)
    _, ys, xs = offsets[0]
    out = xp[:, ys, xs, :].copy()
    arg = np.zeros(out.shape, dtype=np.uint32)
    for k, ys, xs in offsets[1:]:
        v = xp[:, ys, xs, :]
        np.maximum(arg, (v > out) * np.uint32(k), out=arg)
        np.maximum(out, v, out=out)
    return out, arg


def pool_backward(layer: Layer, dout: np.ndarray, arg: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
    n, h, w, c = in_shape
    p = layer.pad
    dxp = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=dout.dtype)
    for k, ys, xs in _offsets(layer):
        dxp[:, ys, xs, :] += dout * (arg == k)
    return dxp[:, p:p + h, p:p + w, :]


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
        return dout * (out > 0)
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
