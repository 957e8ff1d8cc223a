"""Codecs: the shared vectors, error feedback, parameter streams, and refusal of hostile bytes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from mlitb.codecs import (
    BaseMismatch,
    CodecError,
    ErrorFeedback,
    ParamsReceiver,
    ParamsStream,
    decode_vector,
    encode_vector,
    pick,
    topk_count,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "codecs" / "codecs.json").read_text())


def raw(b64: str) -> bytes:
    return base64.b64decode(b64)


def floats(b64: str) -> np.ndarray:
    return np.frombuffer(raw(b64), "<f4").copy()


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_bytes(v):
    assert encode_vector(v["codec"], floats(v["input"]), k=v.get("k")) == raw(v["encoded"])
    assert decode_vector(v["codec"], raw(v["encoded"]), v["size"]).tobytes() == raw(v["decoded"])


@pytest.mark.parametrize("v", VECTORS["feedback"], ids=lambda v: v["name"])
def test_error_feedback_vectors_and_nothing_lost(v):
    ef = ErrorFeedback(v["codec"], v["size"], topk_ratio=v["topk_ratio"])
    sent = np.zeros(v["size"])
    computed = np.zeros(v["size"])
    for grad, want in zip(v["inputs"], v["encoded"]):
        data = ef.encode(floats(grad))
        assert data == raw(want)
        sent += decode_vector(v["codec"], data, v["size"])
        computed += floats(grad)
    assert ef.residual.tobytes() == raw(v["residual"])
    np.testing.assert_allclose(sent + ef.residual, computed, atol=1e-4)


@pytest.mark.parametrize("v", VECTORS["params"], ids=lambda v: v["name"])
def test_param_stream_vectors(v):
    stream, client = ParamsStream(v["codec"], full_every=v["full_every"]), ParamsReceiver(300)
    for it, p, frame, held in zip(v["iterations"], v["inputs"], v["frames"], v["held"]):
        payload = stream.advance(it, floats(p))
        assert (payload.codec, payload.base, payload.data) == (frame["codec"], frame["base"], raw(frame["data"]))
        assert client.apply(it, payload.codec, payload.data, payload.base).tobytes() == raw(held)
        if stream.is_delta:
            assert stream.mirror.tobytes() == raw(held)  # the master mirrors the client exactly


def test_delta_stream_is_exact_every_k_iterations_and_never_drifts():
    rng = np.random.default_rng(0)
    params = rng.normal(0, 0.1, 5000).astype(np.float32)
    stream, client = ParamsStream("delta-i8", full_every=5), ParamsReceiver(params.size)
    worst = 0.0
    for it in range(1, 41):
        params = (params - 0.01 * rng.normal(0, 1, params.size)).astype(np.float32)
        payload = stream.advance(it, params)
        held = client.apply(it, payload.codec, payload.data, payload.base)
        if it % 5 == 0 or it == 1:  # no base yet, then every K
            assert payload.codec == "f32" and held.tobytes() == params.tobytes()
        else:
            assert payload.codec == "delta-i8" and len(payload.data) < params.size * 1.02
        worst = max(worst, float(np.abs(held - params).max()))
    assert worst < 2e-3  # one step's quantisation, not 40 steps' sum


def test_unknown_base_gets_the_full_frame_encoded_once():
    stream = ParamsStream("delta-f16", full_every=100)
    p = np.linspace(-1, 1, 1000, dtype=np.float32)
    stream.advance(1, p)
    delta = stream.advance(2, p * 0.5)
    assert stream.payload_for(1) is delta and delta.base == 1
    full = stream.payload_for(None)
    assert full.codec == "f32" and stream.payload_for(0) is full  # one encode per iteration, shared
    client = ParamsReceiver(p.size)
    assert client.apply(2, full.codec, full.data).tobytes() == stream.mirror.tobytes()
    nxt = stream.advance(3, p * 0.25)
    assert client.apply(3, nxt.codec, nxt.data, nxt.base).tobytes() == stream.mirror.tobytes()


def test_a_delta_against_another_base_is_refused():
    stream, client = ParamsStream("delta-i8"), ParamsReceiver(10)
    p = np.ones(10, np.float32)
    first = stream.advance(1, p)
    client.apply(1, first.codec, first.data)
    stream.advance(2, p * 2)
    third = stream.advance(3, p * 3)
    with pytest.raises(BaseMismatch, match="against iteration 2, this client holds 1"):
        client.apply(3, third.codec, third.data, third.base)
    assert client.params is None


def test_bytes_per_parameter():
    x = np.random.default_rng(1).normal(0, 1, 1_000_000).astype(np.float32)
    f32 = len(encode_vector("f32", x))
    assert f32 / len(encode_vector("f16", x)) == 2
    assert f32 / len(encode_vector("i8", x)) > 3.9
    assert f32 / len(encode_vector("topk", x, k=topk_count(x.size, 0.01))) == pytest.approx(50, rel=0.01)


def test_pick_takes_the_projects_first_choice_the_client_offers():
    assert pick(["f32", "i8", "topk"], ["topk", "i8", "f32"], ("f32", "f16", "i8", "topk")) == "topk"
    assert pick(["f32", "i8"], ["topk", "i8", "f32"], ("f32", "f16", "i8", "topk")) == "i8"
    assert pick(None, ["topk", "i8"], ("f32", "f16", "i8", "topk")) == "f32"
    assert pick(["zstd"], ["zstd"], ("f32",)) == "f32"


def _topk(k: int, idx: list[int], size_bytes: int | None = None) -> bytes:
    return (np.array([k], "<u4").tobytes() + np.array(idx, "<u4").tobytes()
            + np.ones(len(idx), "<f4").tobytes())


@pytest.mark.parametrize("codec,data,size,message", [
    ("f32", np.array([1, np.nan], "<f4").tobytes(), 2, "non-finite value at index 1"),
    ("f32", b"\0" * 7, 2, "7 bytes, expected 8"),
    ("f16", b"\0\x7c", 1, "non-finite"),
    ("i8", np.array([-1], "<f4").tobytes() + b"\0", 1, "scale 0 is -1.0"),
    ("i8", np.array([np.inf], "<f4").tobytes() + b"\0", 1, "scale 0 is inf"),
    ("i8", np.array([1], "<f4").tobytes() + b"\x80", 1, "-128"),
    ("i8", b"\0" * 4, 1, "expected 5"),
    ("topk", _topk(2, [1, 9]), 5, "index 9 is out of range"),
    ("topk", _topk(2, [3, 3]), 5, "strictly increasing"),
    ("topk", _topk(9, []), 5, "count 9 exceeds"),
    ("topk", _topk(2, [1]), 5, "expected 20"),
    ("topk", b"\0", 5, "too short"),
    ("zip", b"", 1, "unknown codec"),
])
def test_decoders_refuse_hostile_bytes(codec, data, size, message):
    with pytest.raises(CodecError, match=message):
        decode_vector(codec, data, size)
