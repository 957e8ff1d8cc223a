"""The WebSocket protocol: msgpack frames, float32 bytes, strict validation.

Every frame is a binary msgpack map with a ``type``. Float arrays travel as
msgpack ``bin`` holding little-endian float32 bytes. The master trusts nothing
a client sends: `parse_client_frame` turns a frame into a typed message or
raises `ProtocolError` with a code and a human message, before anything
touches the model. docs/protocol.md is the reference for every field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from mlitb.codecs import RESULT_CODECS, CodecError, decode_vector
from mlitb.norms import norm
from mlitb.validate import (
    FieldError,
    is_number,
    require_bool,
    require_int,
    require_number,
)
from mlitb.work_order import check_batches

PROTOCOL_VERSION = 1
ROLES = ("trainer", "tracker", "predictor")
MAX_SHARDS_PER_MESSAGE = 100_000
MAX_TEXT = 200
MAX_VOLUNTEER = 64
MAX_LOCAL_STEPS = 256


class ProtocolError(Exception):
    """A frame broke the protocol. `code` is for programs, the message for people."""

    def __init__(self, code: str, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal


@dataclass(frozen=True)
class ClientInfo:
    kind: str = "unknown"
    engine: str = "unknown"
    cores: int = 1
    agent: str = ""
    volunteer: str = ""  # the id a volunteer's browser keeps (or `mlitb worker --name`'s): credit goes to it
    name: str = ""  # how the volunteer wants to be shown
    adapter: str = ""  # the GPU's description when the engine is webgpu
    examples_per_s: float = 0.0  # the engine's calibrated speed on the project's net (0: not measured)


@dataclass(frozen=True)
class Hello:
    role: str
    project: str | None
    client: ClientInfo
    cached: tuple[str, ...] = ()
    predict: bool = False  # also answers `predict` frames (a predictor always does)
    codecs: dict[str, Any] | None = None  # what the client implements (docs/protocol.md, "Codecs"); None: f32


@dataclass(frozen=True)
class Cached:
    shards: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    iteration: int
    grad_sum: np.ndarray = field(repr=False)
    count: int
    loss_sum: float
    correct: int
    compute_ms: float
    batches: tuple[int, ...] = ()  # batch sizes in order (work_order.py); absent on the wire = one batch
    codec: str = "f32"  # how `grad` travelled (codecs.py); `grad_sum` is already decoded
    steps: tuple[int, ...] = ()  # local steps: batches per step (sums to len(batches)); () = a gradient


@dataclass(frozen=True)
class State:
    hidden: bool


@dataclass(frozen=True)
class Prediction:
    """The answer to a `predict` frame: class probabilities, (count, num_classes) row by row.

    Answers with bad values still name their chunk: `error` holds what was wrong, so the master can send
    the chunk to another worker at once and then refuse the frame (instead of waiting for its deadline).
    """

    key: str
    probabilities: np.ndarray = field(repr=False)
    compute_ms: float
    error: ProtocolError | None = None


ClientMessage = Hello | Cached | Result | State | Prediction

PROBABILITY_TOLERANCE = 1e-3  # rows of a `prediction` must sum to 1 within this


def encode(message: dict[str, Any]) -> bytes:
    """One msgpack frame; bytes values become `bin`."""
    return msgpack.packb(message, use_bin_type=True)


def decode(frame: bytes, max_bytes: int) -> dict[str, Any]:
    """A frame as a dict with a string `type`, or ProtocolError."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise ProtocolError("bad_frame", "frames must be binary msgpack, not text")
    if len(frame) > max_bytes:
        raise ProtocolError("frame_too_large", f"frame of {len(frame)} bytes exceeds the limit of {max_bytes}", fatal=True)
    try:
        message = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ProtocolError("bad_frame", f"frame is not valid msgpack: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_frame", "a frame must be a msgpack map with a string 'type'")
    return message


def f32_bytes(array: np.ndarray) -> bytes:
    """Little-endian float32 bytes of an array (no copy when already so)."""
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def f32_array(data: bytes, expected: int | None = None, name: str = "array") -> np.ndarray:
    """A read-only float32 view of little-endian bytes, checked for length."""
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError("bad_field", f"'{name}' must be msgpack bin of float32 bytes")
    if len(data) % 4:
        raise ProtocolError("bad_field", f"'{name}' has {len(data)} bytes, not a multiple of 4")
    array = np.frombuffer(data, dtype="<f4")
    if expected is not None and array.size != expected:
        raise ProtocolError("bad_size", f"'{name}' has {array.size} floats, expected exactly {expected}")
    return array


def parse_client_frame(
    frame: bytes,
    *,
    param_count: int | None,
    max_bytes: int,
    max_grad_norm_per_example: float = 1e4,
    num_classes: int | None = None,
) -> ClientMessage:
    """Validate a client frame completely; `param_count` is None before welcome."""
    message = decode(frame, max_bytes)
    try:
        return _parse(message, param_count, max_grad_norm_per_example, num_classes)
    except FieldError as exc:
        raise ProtocolError("bad_field", f"'{exc.field}' {exc.message}") from None


def _parse(message: dict[str, Any], param_count: int | None, max_grad_norm_per_example: float,
           num_classes: int | None) -> ClientMessage:
    kind = message["type"]
    if kind == "hello":
        return _parse_hello(message)
    if kind == "cached":
        return Cached(_shard_ids(message, "shards"))
    if kind == "result":
        if param_count is None:
            raise ProtocolError("unexpected", "send 'hello' and wait for 'welcome' before results")
        return _parse_result(message, param_count, max_grad_norm_per_example)
    if kind == "state":
        return State(require_bool(message.get("hidden"), "hidden"))
    if kind == "prediction":
        if num_classes is None:
            raise ProtocolError("unexpected", "send 'hello' and wait for 'welcome' before predictions")
        return _parse_prediction(message, num_classes)
    raise ProtocolError("unknown_type", f"unknown message type {kind!r}; expected hello, cached, result, state "
                        "or prediction")


def _parse_hello(message: dict[str, Any]) -> Hello:
    version = message.get("protocol")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("protocol_version", f"this master speaks protocol {PROTOCOL_VERSION}, the client sent {version!r}", fatal=True)
    role = message.get("role")
    if role not in ROLES:
        raise ProtocolError("bad_field", f"'role' must be one of {', '.join(ROLES)}, got {role!r}", fatal=True)
    project = message.get("project")
    if project is not None and not _short_text(project):
        raise ProtocolError("bad_field", "'project' must be a project id string or nil", fatal=True)
    raw = message.get("client") or {}
    if not isinstance(raw, dict):
        raise ProtocolError("bad_field", "'client' must be a map", fatal=True)
    cores = raw.get("cores", 1)
    info = ClientInfo(
        kind=_text_or(raw.get("kind"), "unknown"),
        engine=_text_or(raw.get("engine"), "unknown"),
        cores=cores if isinstance(cores, int) and 0 < cores < 4096 else 1,
        agent=_text_or(raw.get("agent"), ""),
        volunteer=_text_or(raw.get("volunteer"), "")[:MAX_VOLUNTEER],
        name=_text_or(raw.get("name"), "")[:MAX_VOLUNTEER].strip(),
        adapter=_text_or(raw.get("adapter"), ""),
        examples_per_s=_rate_or_zero(raw.get("examples_per_s")),
    )
    try:
        cached = _shard_ids(message, "cached") if "cached" in message else ()
    except ProtocolError as exc:
        raise ProtocolError(exc.code, exc.message, fatal=True) from None
    predict = message.get("predict", role == "predictor")
    if not isinstance(predict, bool):
        raise ProtocolError("bad_field", f"'predict' must be true or false, got {predict!r}", fatal=True)
    codecs = message.get("codecs")
    if codecs is not None and not isinstance(codecs, dict):
        raise ProtocolError("bad_field", "'codecs' must be a map {results: [...], params: [...]} or absent", fatal=True)
    return Hello(role=role, project=project, client=info, cached=cached, predict=predict or role == "predictor",
                 codecs=codecs)


def _parse_result(message: dict[str, Any], param_count: int, max_norm: float) -> Result:
    iteration = require_int(message.get("iteration"), "iteration", low=0)
    count = require_int(message.get("count"), "count", low=1)
    correct = require_int(message.get("correct"), "correct", low=0)
    if correct > count:
        raise ProtocolError("bad_field", f"'correct' ({correct}) cannot exceed 'count' ({count})")
    loss_sum = require_number(message.get("loss_sum"), "loss_sum")
    compute_ms = require_number(message.get("compute_ms"), "compute_ms")
    if loss_sum < 0 or compute_ms < 0:
        raise ProtocolError("bad_field", "'loss_sum' and 'compute_ms' must be non-negative")
    batches = message.get("batches", [count])
    why = check_batches(batches, count)
    if why is not None:
        raise ProtocolError("bad_field", why)
    codec = message.get("codec", "f32")
    if codec not in RESULT_CODECS:
        raise ProtocolError("bad_field", f"'codec' must be one of {', '.join(RESULT_CODECS)}, got {codec!r}")
    steps = message.get("steps", [])
    if (not isinstance(steps, list) or len(steps) > MAX_LOCAL_STEPS
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in steps)
            or (steps and sum(steps) != len(batches))):
        raise ProtocolError("bad_field", "'steps' must list, per local step, its number of batches (each >= 1, "
                                         "summing to the number of batches)")
    if codec == "f32":
        grad = f32_array(message.get("grad"), param_count, "grad")
    else:
        try:
            grad = decode_vector(codec, message.get("grad"), param_count)
        except CodecError as exc:
            raise ProtocolError("bad_values", f"'grad': {exc}") from None
    if not np.isfinite(grad).all():
        raise ProtocolError("bad_values", "'grad' holds NaN or infinite values")
    norm = grad_norm(grad)
    if norm > max_norm * count:
        raise ProtocolError("bad_values", f"'grad' norm {norm:.3g} exceeds the bound {max_norm:g} per example")
    return Result(iteration, grad, count, loss_sum, correct, compute_ms, tuple(batches), codec, tuple(steps))


def grad_norm(grad: np.ndarray) -> float:
    """The Euclidean norm, finite for large but finite gradients (a float32 norm overflows to inf)."""
    return norm(grad)


def _parse_prediction(message: dict[str, Any], num_classes: int) -> Prediction:
    """Structure and values of an answer; whether its row count fits the chunk is the master's check."""
    key = message.get("key")
    if not _short_text(key):
        raise ProtocolError("bad_field", f"'key' must be the key string of a predict frame, got {key!r}")
    compute_ms = require_number(message.get("compute_ms"), "compute_ms")
    if compute_ms < 0:
        raise ProtocolError("bad_field", "'compute_ms' must be non-negative")
    probs = f32_array(message.get("probabilities"), None, "probabilities")
    if probs.size == 0 or probs.size % num_classes:
        return Prediction(key, np.zeros((0, num_classes), np.float32), compute_ms, ProtocolError(
            "bad_size", f"'probabilities' has {probs.size} floats, not a positive multiple of the {num_classes} classes"))
    rows = probs.reshape(-1, num_classes)
    return Prediction(key, rows, compute_ms, _probability_problem(rows))


def _probability_problem(rows: np.ndarray) -> ProtocolError | None:
    if not np.isfinite(rows).all():
        return ProtocolError("bad_values", "'probabilities' holds NaN or infinite values")
    if rows.min() < 0 or rows.max() > 1 + PROBABILITY_TOLERANCE:
        return ProtocolError("bad_values", "'probabilities' must lie in [0, 1]")
    sums = rows.sum(axis=1, dtype=np.float64)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > PROBABILITY_TOLERANCE:
        return ProtocolError("bad_values", f"each row of 'probabilities' must sum to 1 (±{PROBABILITY_TOLERANCE:g}); "
                             f"row {worst} sums to {float(sums[worst]):.6g}")
    return None


def _shard_ids(message: dict[str, Any], name: str) -> tuple[str, ...]:
    value = message.get(name)
    if not isinstance(value, list) or len(value) > MAX_SHARDS_PER_MESSAGE or not all(_short_text(v) for v in value):
        raise ProtocolError("bad_field", f"'{name}' must be a list of shard id strings")
    return tuple(value)


def _short_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT


def _text_or(value: Any, default: str) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else default


def _rate_or_zero(value: Any) -> float:
    """A calibrated examples/s as sent, or 0.0 when it is not a sane non-negative number."""
    return float(value) if is_number(value) and 0 <= value < 1e9 else 0.0


# ------------------------------------------------------------ frames the master sends


def welcome_frame(client_id: str, role: str, *, project: dict[str, Any], dataset: dict[str, Any],
                  limits: dict[str, Any], codecs: dict[str, Any] | None = None) -> bytes:
    """The answer to `hello`: who the client is, the project, where its data is, the limits it must keep,
    and (trainers) the codecs and local steps it uses."""
    message = {"type": "welcome", "protocol": PROTOCOL_VERSION, "client_id": client_id, "role": role,
               "project": project, "dataset": dataset, "limits": limits}
    if codecs is not None:
        message["codecs"] = codecs
    return encode(message)


def assign_frame(shards: list[tuple[str, int, int]]) -> bytes:
    """A trainer's complete allocation: (shard id, examples, bytes) for each shard it should hold."""
    return encode({"type": "assign", "shards": [{"id": s, "count": count, "bytes": size} for s, count, size in shards]})


def idle_frame(reason: str) -> bytes:
    """No work for now: `waiting` (for data or the next boundary), `paused`, or `excluded` (too slow)."""
    return encode({"type": "idle", "reason": reason})


def error_frame(code: str, message: str, fatal: bool = False) -> bytes:
    return encode({"type": "error", "code": code, "message": message, "fatal": fatal})


def params_frame(iteration: int, params: np.ndarray | bytes) -> bytes:
    """The parameters (an array, or its float32 bytes), encoded once per iteration and sent to everyone."""
    return encode({"type": "params", "iteration": iteration, "params": params if isinstance(params, bytes) else f32_bytes(params)})


def work_frame(iteration: int, budget_ms: int, shards: list[str], seed: int = 0) -> bytes:
    """`seed` (uint32) fixes the example order and dropout seeds (work_order.py); the master draws a fresh
    one per work and keeps it with the work, so that the result can be checked and recomputed."""
    return encode({"type": "work", "iteration": iteration, "budget_ms": int(budget_ms), "shards": shards,
                   "seed": int(seed) & 0xFFFFFFFF})


def predict_frame(key: str, iteration: int, pixels: np.ndarray, params: np.ndarray | None) -> bytes:
    """A chunk to classify: uint8 pixels (count, H, W, C); `params` when this connection lacks that iteration's."""
    message: dict[str, Any] = {"type": "predict", "key": key, "iteration": int(iteration),
                               "count": int(pixels.shape[0]), "pixels": np.ascontiguousarray(pixels, np.uint8).tobytes()}
    if params is not None:
        message["params"] = f32_bytes(params)
    return encode(message)


# ------------------------------------------------------------ frames a worker sends


def hello_frame(role: str, project: str | None, client: dict[str, Any], cached: list[str],
                predict: bool = False, codecs: dict[str, Any] | None = None) -> bytes:
    """The first frame of a connection: the role wanted, the project (None: the master's default), the client;
    `predict`: it also answers prediction work; `codecs`: what it implements (None: float32 only)."""
    message = {"type": "hello", "protocol": PROTOCOL_VERSION, "role": role, "project": project,
               "client": client, "cached": cached, "predict": predict}
    if codecs is not None:
        message["codecs"] = codecs
    return encode(message)


def prediction_frame(key: str, probabilities: np.ndarray, compute_ms: float) -> bytes:
    """A worker's answer to `predict`: float32 probabilities (count, classes), row by row."""
    return encode({"type": "prediction", "key": key, "probabilities": f32_bytes(probabilities),
                   "compute_ms": float(compute_ms)})


def cached_frame(shards: list[str]) -> bytes:
    """Every shard the worker holds now (replaces what it said before)."""
    return encode({"type": "cached", "shards": shards})


def result_frame(iteration: int, grad_sum: np.ndarray | bytes, count: int, loss_sum: float, correct: int,
                 compute_ms: float, batches: list[int] | tuple[int, ...] | None = None, *, codec: str = "f32",
                 steps: list[int] | tuple[int, ...] | None = None) -> bytes:
    """What a worker sends back (used by the Python worker and the tests); `batches` defaults to one batch.

    `grad_sum` is a float32 array, or bytes already encoded in `codec`; `steps` only with local steps."""
    message = {
        "type": "result",
        "iteration": iteration,
        "grad": grad_sum if isinstance(grad_sum, bytes) else f32_bytes(grad_sum),
        "count": int(count),
        "loss_sum": float(loss_sum),
        "correct": int(correct),
        "compute_ms": float(compute_ms),
        "batches": [int(b) for b in batches] if batches is not None else [int(count)],
    }
    if codec != "f32":
        message["codec"] = codec
    if steps:
        message["steps"] = [int(n) for n in steps]
    return encode(message)


# ------------------------------------------------------------ codecs (docs/protocol.md, "Codecs")


def coded_params_frame(iteration: int, codec: str, data: bytes, base: int | None = None) -> bytes:
    """A `params` frame in a parameter codec (codecs.py); `base` only on delta frames."""
    message: dict[str, Any] = {"type": "params", "iteration": iteration, "codec": codec, "params": data}
    if base is not None:
        message["base"] = base
    return encode(message)


def moved_frame(project: str | None, url: str | None, masters: list[str]) -> bytes:
    """Another master owns the project (several masters on one Redis, docs/deploy.md): reconnect to `url`.

    `url` is None while no master owns it yet (a hand-over in progress): retry
    after a short backoff on any of `masters`, the live masters' public URLs.
    """
    return encode({"type": "moved", "project": project, "url": url, "masters": masters})


class Moved(ProtocolError):
    """Raised by a lobby that does not own the project; the connection answers with `frame` and closes."""

    def __init__(self, frame: bytes, message: str) -> None:
        super().__init__("moved", message, fatal=True)
        self.frame = frame
