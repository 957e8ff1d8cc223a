"""The trainer connection's pure parts: URLs, backoff, the one-slot mailbox."""

from __future__ import annotations

import asyncio
import random

import pytest

from mlitb.backoff import full_jitter_s
from mlitb.worker.client import Latest, websocket_url


@pytest.mark.parametrize(
    ("master", "ws"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws"),
        ("http://host:8000/", "ws://host:8000/ws"),
        ("https://example.org/mlitb", "wss://example.org/mlitb/ws"),
        ("ws://host:1/ws", "ws://host:1/ws"),
    ],
)
def test_websocket_url(master, ws):
    assert websocket_url(master) == ws


def test_websocket_url_refuses_other_schemes():
    with pytest.raises(ValueError, match="must start with"):
        websocket_url("ftp://host")


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap():
    rng = random.Random(1)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (60, 30.0)]:
        delays = [full_jitter_s(attempt + 1, 0.5, 30.0, rng) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling  # spread over the whole range, not bunched
        assert min(delays) < 0.2 * ceiling


async def test_latest_keeps_only_the_newest_value():
    box: Latest[int] = Latest()
    box.put(1)
    box.put(2)
    assert await box.get() == 2
    waiter = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.put(3)
    assert await asyncio.wait_for(waiter, 1) == 3
