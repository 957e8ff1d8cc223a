"""The prediction frames (protocol.py), the request decoding (predict_input.py), the rate limit (rate_limit.py)."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from mlitb.master.predict_input import TooMany, decode_msgpack
from mlitb.master.rate_limit import RateLimiter
from mlitb.protocol import (
    Hello,
    Prediction,
    ProtocolError,
    encode,
    parse_client_frame,
    predict_frame,
    prediction_frame,
)
from mlitb.validate import FieldError

CLASSES = 3


def parse(frame: bytes, num_classes: int | None = CLASSES):
    return parse_client_frame(frame, param_count=5, max_bytes=1 << 20, num_classes=num_classes)


def rows(count: int) -> np.ndarray:
    p = np.random.default_rng(0).random((count, CLASSES)).astype(np.float32)
    return p / p.sum(axis=1, keepdims=True)


def test_a_prediction_round_trips_float32_rows():
    probs = rows(4)
    message = parse(prediction_frame("r.0.0", probs, 12.5))
    assert isinstance(message, Prediction) and message.error is None
    assert (message.key, message.compute_ms) == ("r.0.0", 12.5)
    assert np.array_equal(message.probabilities, probs)


@pytest.mark.parametrize("values, code", [
    (np.full((2, CLASSES), np.nan, np.float32), "bad_values"),
    (np.array([[0.5, 0.6, -0.1]], np.float32), "bad_values"),
    (np.array([[0.5, 0.6, 0.1]], np.float32), "bad_values"),
    (np.ones(4, np.float32) / 4, "bad_size"),
])
def test_bad_probabilities_name_their_chunk_and_the_problem(values, code):
    message = parse(prediction_frame("k", values, 1.0))
    assert message.key == "k" and message.error is not None and message.error.code == code


@pytest.mark.parametrize("message, code", [
    ({"type": "prediction", "key": "", "probabilities": b"", "compute_ms": 1.0}, "bad_field"),
    ({"type": "prediction", "key": "k", "probabilities": [0.5, 0.5, 0.0], "compute_ms": 1.0}, "bad_field"),
    ({"type": "prediction", "key": "k", "probabilities": b"\0" * 12, "compute_ms": -1.0}, "bad_field"),
])
def test_malformed_predictions_are_refused(message, code):
    with pytest.raises(ProtocolError) as caught:
        parse(encode(message))
    assert caught.value.code == code


def test_a_prediction_before_welcome_is_unexpected():
    with pytest.raises(ProtocolError) as caught:
        parse(prediction_frame("k", rows(1), 1.0), num_classes=None)
    assert caught.value.code == "unexpected"


def test_hello_says_whether_the_client_takes_predictions():
    base = {"type": "hello", "protocol": 1, "project": "p", "client": {}}
    assert parse(encode({**base, "role": "trainer"})).predict is False
    assert parse(encode({**base, "role": "trainer", "predict": True})).predict is True
    predictor = parse(encode({**base, "role": "predictor"}))
    assert isinstance(predictor, Hello) and predictor.predict is True
    with pytest.raises(ProtocolError) as caught:
        parse(encode({**base, "role": "trainer", "predict": "yes"}))
    assert caught.value.fatal


def test_predict_frame_carries_params_only_when_asked():
    pixels = np.arange(2 * 2 * 2, dtype=np.uint8).reshape(2, 2, 2, 1)
    plain = msgpack.unpackb(predict_frame("k", 7, pixels, None), raw=False)
    assert (plain["count"], plain["iteration"], plain["pixels"]) == (2, 7, pixels.tobytes()) and "params" not in plain
    with_params = msgpack.unpackb(predict_frame("k", 7, pixels, np.ones(3, np.float32)), raw=False)
    assert np.array_equal(np.frombuffer(with_params["params"], "<f4"), np.ones(3))


def test_msgpack_batches_are_checked_and_resized_like_training_data():
    batch = np.random.default_rng(1).integers(0, 256, (3, 10, 12, 3), np.uint8)
    body = msgpack.packb({"shape": list(batch.shape), "pixels": batch.tobytes()})
    out = decode_msgpack(body, (28, 28, 1), max_pixels=10_000, max_images=10)
    assert out.shape == (3, 28, 28, 1) and out.dtype == np.uint8
    with pytest.raises(TooMany):
        decode_msgpack(body, (28, 28, 1), max_pixels=10_000, max_images=2)
    with pytest.raises(FieldError) as caught:
        decode_msgpack(body, (28, 28, 1), max_pixels=100, max_images=10)
    assert caught.value.field == "shape"


def test_rate_limit_allows_a_burst_then_refills_over_time():
    limiter = RateLimiter(per_minute=60, burst=2)
    assert [limiter.take("a", 0.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("a", 0.0) == pytest.approx(1.0)  # one token a second
    assert limiter.take("b", 0.0) == 0.0  # addresses are counted apart
    assert limiter.take("a", 1.0) == 0.0


def test_rate_limit_memory_is_bounded():
    limiter = RateLimiter(per_minute=1, burst=1, max_clients=3)
    for address in "abcd":
        limiter.take(address, 0.0)
    assert len(limiter._buckets) == 3
