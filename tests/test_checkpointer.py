"""The checkpoint writer: off the loop, newest value only, through a real Redis outage."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import numpy as np
import pytest

from mlitb.master.checkpoint import Checkpoint
from mlitb.master.checkpointer import Checkpointer, Policy
from mlitb.store import FileStore, RedisStore
from tests.redis_process import RedisProcess, redis_process

FAST = Policy(every=5, interval_s=float("inf"), backoff_base_s=0.02, backoff_max_s=0.2)


def snapshot(iteration: int, size: int = 1000) -> Checkpoint:
    params = np.full(size, iteration, np.float32)
    return Checkpoint(iteration, params, {"name": "adagrad", "sum_sq": params * 2})


@pytest.fixture
def redis() -> RedisProcess:
    with redis_process() as server:
        yield server


async def test_due_every_n_iterations_counting_from_the_first_seen(tmp_path):
    writer = Checkpointer(FileStore(tmp_path), FAST)
    saved = []
    for iteration in range(7, 30):
        if writer.due("k", iteration):
            writer.save("k", snapshot(iteration))
            saved.append(iteration)
    assert saved == [10, 15, 20, 25]
    assert await writer.flush(5)


async def test_a_checkpoint_lands_consistent(tmp_path):
    store = FileStore(tmp_path)
    writer = Checkpointer(store, FAST)
    writer.save("projects/p/checkpoint", snapshot(7))
    assert await writer.flush(5)
    back = Checkpoint.decode(await FileStore(tmp_path).get("projects/p/checkpoint"))
    assert back.iteration == 7 and (back.params == 7).all() and (back.optimizer_state["sum_sq"] == 14).all()
    assert writer.writes == 1


async def test_encoding_runs_off_the_event_loop(tmp_path):
    """A slow encode (a big model) must not stop the loop: a ticker keeps ticking meanwhile."""
    writer = Checkpointer(FileStore(tmp_path), FAST)
    encoding = threading.Event()

    def slow_encode() -> bytes:
        encoding.set()
        time.sleep(0.5)
        return b"blob"

    started = time.perf_counter()
    writer.put("k", slow_encode)
    assert time.perf_counter() - started < 0.05
    ticks = 0
    while not encoding.is_set() or writer._in_flight:
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks >= 20, f"the loop ran only {ticks} times while encoding"
    assert await writer.flush(5)


async def test_an_outage_keeps_the_newest_retries_logs_once_and_writes_when_redis_is_back(redis, caplog):
    caplog.set_level(logging.WARNING, logger="mlitb.master.checkpointer")
    store = RedisStore(redis.url)
    writer = Checkpointer(store, FAST)
    writer.save("projects/p/checkpoint", snapshot(1))
    assert await writer.flush(5)
    redis.stop()
    for iteration in range(2, 12):
        writer.save("projects/p/checkpoint", snapshot(iteration))
        await asyncio.sleep(0.05)
    assert writer.outage is not None and writer.outage.failures >= 3
    redis.start()
    assert await writer.flush(10)
    assert Checkpoint.decode(await store.get("projects/p/checkpoint")).iteration == 11
    messages = [r.getMessage() for r in caplog.records]
    assert sum("retrying with backoff" in m for m in messages) == 1, messages
    assert sum("the store is back" in m for m in messages) == 1, messages
    assert writer.outage is None
    await store.close()


async def test_flush_gives_up_and_says_so_when_redis_stays_away(redis, caplog):
    store = RedisStore(redis.url)
    writer = Checkpointer(store, FAST)
    redis.stop()
    writer.save("projects/p/checkpoint", snapshot(3))
    started = time.perf_counter()
    assert not await writer.flush(0.5)
    assert time.perf_counter() - started < 3
    assert "not written after" in caplog.text and "projects/p/checkpoint" in caplog.text
    await writer.close()
    await store.close()


async def test_dropped_keys_stay_deleted(tmp_path):
    store = FileStore(tmp_path)
    writer = Checkpointer(store, FAST)
    in_flight = threading.Event()
    writer.put("projects/p/definition", lambda: in_flight.set() or time.sleep(0.2) or b"def")
    assert await asyncio.to_thread(in_flight.wait, 5)
    writer.put("projects/p/definition", b"newer")
    await writer.drop("projects/p/definition")
    await store.delete("projects/p/definition")
    assert await writer.flush(5)
    assert await FileStore(tmp_path).get("projects/p/definition") is None
