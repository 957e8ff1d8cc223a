"""The WebSocket protocol: msgpack frames, float32 bytes, strict validation.

Every frame is a binary msgpack map with a ``type``. Float arrays travel as
msgpack ``bin`` holding little-endian float32 bytes. The master trusts nothing
a client sends: `parse_client_frame` turns a frame into a typed message or
raises `ProtocolError` with a code and a human message, before anything
touches the model. docs/protocol.md is the reference for every field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from mlitb.codecs import RESULT_CODECS, CodecError, decode_vector
from mlitb.norms import norm
from mlitb.work_order import check_batches

PROTOCOL_VERSION = 1
ROLES = ("trainer", "tracker")
MAX_SHARDS_PER_MESSAGE = 100_000
MAX_TEXT = 200
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


@dataclass(frozen=True)
class Hello:
    role: str
    project: str | None
    client: ClientInfo
    cached: tuple[str, ...] = ()
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


ClientMessage = Hello | Cached | Result | State


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
) -> ClientMessage:
    """Validate a client frame completely; `param_count` is None before welcome."""
    message = decode(frame, max_bytes)
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
        return State(_bool(message, "hidden"))
    raise ProtocolError("unknown_type", f"unknown message type {kind!r}; expected hello, cached, result or state")


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
    )
    try:
        cached = _shard_ids(message, "cached") if "cached" in message else ()
    except ProtocolError as exc:
        raise ProtocolError(exc.code, exc.message, fatal=True) from None
    codecs = message.get("codecs")
    if codecs is not None and not isinstance(codecs, dict):
        raise ProtocolError("bad_field", "'codecs' must be a map {results: [...], params: [...]} or absent", fatal=True)
    return Hello(role=role, project=project, client=info, cached=cached, codecs=codecs)


def _parse_result(message: dict[str, Any], param_count: int, max_norm: float) -> Result:
    iteration = _int(message, "iteration", minimum=0)
    count = _int(message, "count", minimum=1)
    correct = _int(message, "correct", minimum=0)
    if correct > count:
        raise ProtocolError("bad_field", f"'correct' ({correct}) cannot exceed 'count' ({count})")
    loss_sum = _number(message, "loss_sum")
    compute_ms = _number(message, "compute_ms")
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


def _int(message: dict[str, Any], name: str, minimum: int) -> int:
    value = message.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ProtocolError("bad_field", f"'{name}' must be an integer >= {minimum}, got {value!r}")
    return value


def _number(message: dict[str, Any], name: str) -> float:
    value = message.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ProtocolError("bad_field", f"'{name}' must be a finite number, got {value!r}")
    return float(value)


def _bool(message: dict[str, Any], name: str) -> bool:
    value = message.get(name)
    if not isinstance(value, bool):
        raise ProtocolError("bad_field", f"'{name}' must be true or false, got {value!r}")
    return value


def _shard_ids(message: dict[str, Any], name: str) -> tuple[str, ...]:
    value = message.get(name)
    if not isinstance(value, list) or len(value) > MAX_SHARDS_PER_MESSAGE or not all(_short_text(v) for v in value):
        raise ProtocolError("bad_field", f"'{name}' must be a list of shard id strings")
    return tuple(value)


def _short_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT


def _text_or(value: Any, default: str) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else default


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


# ------------------------------------------------------------ frames a worker sends


def hello_frame(role: str, project: str | None, client: dict[str, Any], cached: list[str],
                codecs: dict[str, Any] | None = None) -> bytes:
    """The first frame of a connection: the role wanted, the project (None: the master's default), the client,
    and the codecs it implements (None: float32 only)."""
    message = {"type": "hello", "protocol": PROTOCOL_VERSION, "role": role, "project": project,
               "client": client, "cached": cached}
    if codecs is not None:
        message["codecs"] = codecs
    return encode(message)


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
