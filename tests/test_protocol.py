"""Frame validation: every bad frame is refused with a code, good ones parse."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from mlitb.protocol import (
    Cached,
    Hello,
    ProtocolError,
    Result,
    State,
    encode,
    f32_array,
    params_frame,
    parse_client_frame,
    result_frame,
)

P = 5


def parse(message, param_count=P):
    frame = message if isinstance(message, (bytes, str)) else encode(message)
    return parse_client_frame(frame, param_count=param_count, max_bytes=1 << 20)


def hello(**extra):
    return {"type": "hello", "protocol": 1, "role": "trainer", "project": "p1", "client": {"kind": "python", "cores": 4}, **extra}


def test_hello_parses_with_defaults():
    msg = parse(hello(cached=["s1"]))
    assert isinstance(msg, Hello)
    assert (msg.role, msg.project, msg.client.kind, msg.client.cores, msg.cached) == ("trainer", "p1", "python", 4, ("s1",))


def test_result_round_trip_keeps_float32_bits():
    grad = np.array([1.5, -2.25, 3e-8, 0.0, 7.0], dtype=np.float32)
    msg = parse(result_frame(3, grad, 10, 4.5, 7, 12.5))
    assert isinstance(msg, Result)
    assert msg.iteration == 3 and msg.count == 10 and msg.correct == 7
    assert msg.grad_sum.tobytes() == grad.tobytes()


def test_params_frame_is_float32_bin():
    params = np.arange(4, dtype=np.float32)
    message = msgpack.unpackb(params_frame(2, params))
    assert message["iteration"] == 2
    assert np.array_equal(np.frombuffer(message["params"], "<f4"), params)


def test_cached_and_state():
    assert parse({"type": "cached", "shards": ["a", "b"]}) == Cached(("a", "b"))
    assert parse({"type": "state", "hidden": True}) == State(True)


@pytest.mark.parametrize(
    "frame, code",
    [
        ("text frame", "bad_frame"),
        (b"\xc1", "bad_frame"),
        (encode([1, 2]), "bad_frame"),
        ({"type": "nope"}, "unknown_type"),
        (hello(protocol=2), "protocol_version"),
        (hello(role="boss"), "bad_field"),
        ({"type": "cached", "shards": "s1"}, "bad_field"),
        ({"type": "state", "hidden": 1}, "bad_field"),
    ],
)
def test_bad_frames_are_refused(frame, code):
    with pytest.raises(ProtocolError) as info:
        parse(frame)
    assert info.value.code == code


def good_result(**change):
    message = {"type": "result", "iteration": 1, "grad": np.ones(P, np.float32).tobytes(), "count": 2, "loss_sum": 1.0, "correct": 1, "compute_ms": 5.0}
    message.update(change)
    return message


@pytest.mark.parametrize(
    "change, code",
    [
        ({"grad": np.ones(P + 1, np.float32).tobytes()}, "bad_size"),
        ({"grad": b"abc"}, "bad_field"),
        ({"grad": [1.0] * P}, "bad_field"),
        ({"grad": np.array([1, np.nan, 0, 0, 0], np.float32).tobytes()}, "bad_values"),
        ({"grad": np.array([1e30, 0, 0, 0, 0], np.float32).tobytes()}, "bad_values"),
        ({"count": 0}, "bad_field"),
        ({"correct": 3}, "bad_field"),
        ({"loss_sum": float("inf")}, "bad_field"),
        ({"iteration": -1}, "bad_field"),
        ({"iteration": True}, "bad_field"),
    ],
)
def test_bad_results_are_refused(change, code):
    with pytest.raises(ProtocolError) as info:
        parse(good_result(**change))
    assert info.value.code == code


def test_result_before_welcome_is_unexpected():
    with pytest.raises(ProtocolError) as info:
        parse(good_result(), param_count=None)
    assert info.value.code == "unexpected"


def test_oversized_frame_is_fatal():
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(encode(good_result()), param_count=P, max_bytes=10)
    assert info.value.code == "frame_too_large" and info.value.fatal


def test_f32_array_is_a_view_of_the_bytes():
    data = np.array([1, 2, 3], np.float32).tobytes()
    assert f32_array(data, 3).tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "batches, why",
    [([1], "sums to 1"), ([0, 2], ">= 1"), ([], "non-empty"), ([1] * 4097, "at most 4096"), ("2", "non-empty list")],
)
def test_bad_batch_lists_are_refused_naming_why(batches, why):
    with pytest.raises(ProtocolError) as info:
        parse(good_result(batches=batches))
    assert info.value.code == "bad_field" and why in info.value.message


def test_batches_parse_and_default_to_one_batch():
    assert parse(good_result(batches=[1, 1])).batches == (1, 1)
    assert parse(good_result()).batches == (2,)
    frame = result_frame(3, np.zeros(P, np.float32), 7, 1.0, 2, 4.0, batches=[4, 3])
    assert parse_client_frame(frame, param_count=P, max_bytes=1 << 20).batches == (4, 3)


def test_large_finite_gradients_are_out_of_bound_not_called_infinite():
    """float32's norm of 3e38-sized values overflows; the float64 norm names the real problem."""
    big = np.full(P, 3e38, np.float32)
    with pytest.raises(ProtocolError) as info:
        parse(good_result(grad=big.tobytes()))
    assert info.value.code == "bad_values" and "exceeds the bound" in info.value.message
    with pytest.raises(ProtocolError) as info:
        parse(good_result(grad=np.array([1, np.inf, 0, 0, 0], np.float32).tobytes()))
    assert "NaN or infinite" in info.value.message


def test_work_frame_carries_a_uint32_seed():
    from mlitb.protocol import decode, work_frame
    message = decode(work_frame(4, 900, ["a", "b"], seed=2**32 + 5), 1 << 20)
    assert (message["seed"], message["shards"]) == (5, ["a", "b"])
