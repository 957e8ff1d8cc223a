"""Compact encodings of the two big vectors a trainer moves each iteration: its result and the parameters.

A float32 result or parameter frame costs 4 bytes per parameter each way;
over a home uplink and a model of a million parameters that is the whole
iteration. Every codec here turns a float32 vector of P numbers into bytes and
back, with byte formats fixed exactly (docs/protocol.md, "Codecs", and the
shared test vectors in tests/vectors/codecs.json, which mlitb/static/js/codecs.js
reproduces bit for bit):

results (client → master), `result.codec`:
  * ``f32``  P × float32.
  * ``f16``  P × IEEE half (round to nearest even, clamped to ±65504).
  * ``i8``   ceil(P / 256) float32 block scales, then P × int8 in [-127, 127];
             value = q × scale, scale = max |x| of the block / 127.
  * ``topk`` uint32 k, k strictly increasing uint32 indices, k float32 values;
             the k largest |x| (ties: lower index first); the rest are 0.

parameters (master → client), `params.codec`:
  * ``f32``, ``f16``   the vector itself.
  * ``delta-f16``, ``delta-i8``  the difference to the *mirror* (what a delta
    client holds after the previous frame), in ``f16`` / ``i8``; the master
    updates its mirror with the decoded delta exactly as the client does, so
    quantisation error is carried into the next delta instead of drifting; a
    full float32 frame of the mirror goes to a client whose base is unknown,
    and every K iterations the mirror is reset to the parameters (full frame
    for everyone, bit for bit the master's).

Lossy result codecs are used with `ErrorFeedback`: the client keeps what the
codec dropped and adds it to its next result (Deep Gradient Compression), so
nothing is lost, only delayed. Decoders trust nothing: sizes, index ranges,
finite values and scales are checked before anything is summed.

All arithmetic that decides bytes is pinned so that numpy and JavaScript
agree: block maxima and quotients in float64, round half away from zero,
scale rounded to float32, products and sums rounded to float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

RESULT_CODECS = ("f32", "f16", "i8", "topk")
PARAM_CODECS = ("f32", "f16", "delta-f16", "delta-i8")
LOSSY_RESULT_CODECS = ("f16", "i8", "topk")
BLOCK = 256  # int8 block size (values per float32 scale)
HALF_MAX = 65504.0
DEFAULT_TOPK_RATIO = 0.01
DEFAULT_FULL_EVERY = 20


class CodecError(ValueError):
    """Bytes that do not decode under the codec they claim; the message says what was wrong."""


# ------------------------------------------------------------ vector codecs


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def topk_count(size: int, ratio: float) -> int:
    """How many values a top-k result keeps: ceil(size × ratio), at least 1, at most size."""
    if not (0 < ratio <= 1):
        raise ValueError(f"top-k ratio must be in (0, 1], got {ratio!r}")
    return max(1, min(size, math.ceil(size * ratio)))


def encode_vector(codec: str, x: np.ndarray, *, k: int | None = None) -> bytes:
    """The bytes of float32 vector `x` under `codec` (`k` values for topk)."""
    x = _f32(x)
    if codec == "f32":
        return x.astype("<f4").tobytes()
    if codec == "f16":
        return _encode_f16(x)
    if codec == "i8":
        return _encode_i8(x)
    if codec == "topk":
        if k is None:
            raise ValueError("topk needs k")
        return _encode_topk(x, k)
    raise ValueError(f"unknown codec {codec!r} (known: {', '.join(RESULT_CODECS)})")


def decode_vector(codec: str, data: bytes, size: int) -> np.ndarray:
    """The float32 vector of `size` values that `data` encodes, or CodecError naming the fault."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"{codec} data must be binary, got {type(data).__name__}")
    data = bytes(data)
    if codec == "f32":
        _expect_len(codec, data, 4 * size, f"{size} float32")
        out = np.frombuffer(data, "<f4").astype(np.float32)
    elif codec == "f16":
        _expect_len(codec, data, 2 * size, f"{size} float16")
        out = np.frombuffer(data, "<f2").astype(np.float32)
    elif codec == "i8":
        out = _decode_i8(data, size)
    elif codec == "topk":
        out = _decode_topk(data, size)
    else:
        raise CodecError(f"unknown codec {codec!r} (known: {', '.join(RESULT_CODECS)})")
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise CodecError(f"{codec} data decodes to a non-finite value at index {bad}")
    return out


def _expect_len(codec: str, data: bytes, want: int, what: str) -> None:
    if len(data) != want:
        raise CodecError(f"{codec} data has {len(data)} bytes, expected {want} ({what})")


def _encode_f16(x: np.ndarray) -> bytes:
    return np.clip(x, -HALF_MAX, HALF_MAX).astype("<f2").tobytes()


def _block_count(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK


def _encode_i8(x: np.ndarray) -> bytes:
    size = x.size
    blocks = _block_count(size)
    padded = np.zeros(blocks * BLOCK, np.float64)
    padded[:size] = x
    padded = padded.reshape(blocks, BLOCK)
    scales = (np.abs(padded).max(axis=1) / 127.0).astype(np.float32)
    divisor = scales.astype(np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(divisor > 0, padded / np.where(divisor > 0, divisor, 1.0), 0.0)
    q = np.clip(np.sign(ratio) * np.floor(np.abs(ratio) + 0.5), -127, 127).astype(np.int8)
    return scales.astype("<f4").tobytes() + q.reshape(-1)[:size].tobytes()


def _decode_i8(data: bytes, size: int) -> np.ndarray:
    blocks = _block_count(size)
    _expect_len("i8", data, 4 * blocks + size, f"{blocks} float32 scales + {size} int8")
    scales = np.frombuffer(data, "<f4", count=blocks)
    if not np.isfinite(scales).all() or (scales < 0).any():
        bad = int(np.flatnonzero(~(np.isfinite(scales) & (scales >= 0)))[0])
        raise CodecError(f"i8 block scale {bad} is {float(scales[bad])!r}; scales must be finite and >= 0")
    q = np.frombuffer(data, np.int8, count=size, offset=4 * blocks)
    if (q == -128).any():
        raise CodecError(f"i8 value at index {int(np.flatnonzero(q == -128)[0])} is -128; values must be in [-127, 127]")
    return q.astype(np.float32) * np.repeat(scales, BLOCK)[:size]


def _topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest |x|, ties to the lower index, ascending."""
    size = x.size
    if k >= size:
        return np.arange(size, dtype=np.int64)
    a = np.abs(x)
    threshold = np.partition(a, size - k)[size - k]
    above = np.flatnonzero(a > threshold)
    equal = np.flatnonzero(a == threshold)[: k - above.size]
    return np.sort(np.concatenate([above, equal]))


def _encode_topk(x: np.ndarray, k: int) -> bytes:
    if not 0 <= k <= x.size:
        raise ValueError(f"k must be in [0, {x.size}], got {k}")
    idx = _topk_indices(x, k) if k else np.zeros(0, np.int64)
    return (np.array([idx.size], "<u4").tobytes() + idx.astype("<u4").tobytes()
            + x[idx].astype("<f4").tobytes())


def _decode_topk(data: bytes, size: int) -> np.ndarray:
    if len(data) < 4:
        raise CodecError(f"topk data has {len(data)} bytes, too short for its uint32 count")
    k = int(np.frombuffer(data, "<u4", count=1)[0])
    if k > size:
        raise CodecError(f"topk count {k} exceeds the {size} parameters")
    _expect_len("topk", data, 4 + 8 * k, f"count + {k} uint32 indices + {k} float32 values")
    idx = np.frombuffer(data, "<u4", count=k, offset=4).astype(np.int64)
    values = np.frombuffer(data, "<f4", count=k, offset=4 + 4 * k)
    if k and int(idx[-1]) >= size:
        raise CodecError(f"topk index {int(idx[-1])} is out of range (parameters: {size})")
    if k > 1 and not (np.diff(idx) > 0).all():
        bad = int(np.flatnonzero(np.diff(idx) <= 0)[0]) + 1
        raise CodecError(f"topk indices must be strictly increasing; index {bad} ({int(idx[bad])}) is not")
    out = np.zeros(size, np.float32)
    out[idx] = values
    return out


# ------------------------------------------------------------ results: error feedback on the client


@dataclass
class ErrorFeedback:
    """A client's result encoder: adds what earlier results lost, encodes, keeps what this one loses.

    For ``f32`` nothing is lost and no residual is kept. The residual is the
    float32 difference between what should have been sent and what the
    master will decode, so the sum of everything decoded over iterations
    equals the sum of everything computed, up to the last residual.
    """

    codec: str
    size: int
    topk_ratio: float = DEFAULT_TOPK_RATIO
    residual: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.codec not in RESULT_CODECS:
            raise ValueError(f"unknown result codec {self.codec!r} (known: {', '.join(RESULT_CODECS)})")

    def encode(self, grad_sum: np.ndarray) -> bytes:
        grad_sum = _f32(grad_sum)
        if grad_sum.shape != (self.size,):
            raise ValueError(f"result must have shape ({self.size},), got {grad_sum.shape}")
        if self.codec == "f32":
            return encode_vector("f32", grad_sum)
        wanted = grad_sum + self.residual if self.residual is not None else grad_sum.copy()
        k = topk_count(self.size, self.topk_ratio) if self.codec == "topk" else None
        data = encode_vector(self.codec, wanted, k=k)
        self.residual = wanted - decode_vector(self.codec, data, self.size)
        return data

    def reset(self) -> None:
        """Forget the residual (new parameters from a full resync, or a new project)."""
        self.residual = None


# ------------------------------------------------------------ parameters: one stream per codec on the master


@dataclass(frozen=True)
class ParamsPayload:
    """The `params` frame fields for one iteration: codec, base iteration (deltas only) and bytes."""

    codec: str
    data: bytes = field(repr=False)
    base: int | None = None


@dataclass
class ParamsStream:
    """The master's encoder of one parameter codec: one encode per iteration, shared by all its clients.

    `advance` is called once per iteration with the new parameters. For the
    delta codecs it returns the delta against the mirror and moves the mirror;
    `full` gives the float32 resync frame (the mirror itself), encoded at
    most once per iteration, for clients whose base is not the previous
    iteration. A client's base is known when it answered the previous
    iteration's work (it then held that iteration's parameters).
    """

    codec: str
    full_every: int = DEFAULT_FULL_EVERY
    iteration: int | None = None
    mirror: np.ndarray | None = field(default=None, repr=False)
    _current: ParamsPayload | None = field(default=None, repr=False)
    _full: ParamsPayload | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.codec not in PARAM_CODECS:
            raise ValueError(f"unknown parameter codec {self.codec!r} (known: {', '.join(PARAM_CODECS)})")
        if self.full_every < 1:
            raise ValueError(f"full_every must be >= 1, got {self.full_every}")

    @property
    def is_delta(self) -> bool:
        return self.codec.startswith("delta-")

    def advance(self, iteration: int, params: np.ndarray) -> ParamsPayload:
        params = _f32(params)
        self._full = None
        if not self.is_delta:
            self.iteration = iteration
            self._current = ParamsPayload(self.codec, encode_vector(self.codec, params))
            return self._current
        inner = self.codec[len("delta-"):]
        contiguous = self.iteration is not None and iteration == self.iteration + 1
        if self.mirror is None or not contiguous or iteration % self.full_every == 0 or self.mirror.shape != params.shape:
            self.mirror = params.copy()
            self._current = self._full = ParamsPayload("f32", encode_vector("f32", params))
        else:
            data = encode_vector(inner, params - self.mirror)
            self.mirror = self.mirror + decode_vector(inner, data, params.size)
            self._current = ParamsPayload(self.codec, data, base=self.iteration)
        self.iteration = iteration
        return self._current

    def full(self) -> ParamsPayload:
        """The resync frame of the current iteration: float32 of what delta clients hold."""
        if self._full is None:
            if self.mirror is None:
                raise RuntimeError("advance() first")
            self._full = ParamsPayload("f32", encode_vector("f32", self.mirror))
        return self._full

    def payload_for(self, client_base: int | None) -> ParamsPayload:
        """What to send a client that holds the parameters of iteration `client_base` (None: unknown)."""
        if self._current is None:
            raise RuntimeError("advance() first")
        if self._current.base is None or client_base == self._current.base:
            return self._current
        return self.full()


class BaseMismatch(CodecError):
    """A delta frame whose base is not the parameters this client holds: skip the work, wait for a full frame."""


@dataclass
class ParamsReceiver:
    """A client's view of the parameters: applies full and delta frames, knows which iteration it holds."""

    size: int
    iteration: int | None = None
    params: np.ndarray | None = field(default=None, repr=False)

    def apply(self, iteration: int, codec: str, data: bytes, base: int | None = None) -> np.ndarray:
        if codec in ("f32", "f16"):
            values = decode_vector(codec, data, self.size)
        elif codec in ("delta-f16", "delta-i8"):
            if self.params is None or base is None or base != self.iteration:
                held = self.iteration
                self.iteration = self.params = None
                raise BaseMismatch(f"{codec} frame for iteration {iteration} is against iteration {base}, "
                                   f"this client holds {held}")
            values = self.params + decode_vector(codec[len("delta-"):], data, self.size)
        else:
            raise CodecError(f"unknown parameter codec {codec!r} (known: {', '.join(PARAM_CODECS)})")
        self.params, self.iteration = values, iteration
        return values


def pick(offered: list[str] | tuple[str, ...] | None, allowed: tuple[str, ...] | list[str], known: tuple[str, ...]) -> str:
    """The codec for one client: the first of the project's `allowed` (its preference order) the client offers.

    A client that states nothing offers only ``f32``, which every project
    allows, so old clients keep working.
    """
    offer = set(offered or ("f32",)) & set(known)
    for codec in allowed:
        if codec in offer:
            return codec
    return "f32"
