"""The store contract: both backends pass the same suite."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mlitb.store import FileStore, RedisStore, StoreError, StoreUnavailable, open_store
from tests.helpers import free_port
from tests.redis_process import redis_process


async def test_put_get_delete(store):
    assert await store.get("projects/a") is None
    await store.put("projects/a", b"\x00\x01binary")
    assert await store.get("projects/a") == b"\x00\x01binary"
    await store.delete("projects/a", "projects/missing")
    assert await store.get("projects/a") is None


async def test_put_many_and_prefix_listing(store):
    await store.put_many({"datasets/d1/shards/s1": b"1", "datasets/d1/shards/s2": b"2", "datasets/d1/manifest": b"m"})
    await store.put("datasets/d2/manifest", b"m2")
    assert await store.keys("datasets/d1/") == ["datasets/d1/manifest", "datasets/d1/shards/s1", "datasets/d1/shards/s2"]
    assert len(await store.keys()) == 4
    await store.delete(*await store.keys("datasets/d1/"))
    assert await store.keys("datasets/") == ["datasets/d2/manifest"]


async def test_prefix_cannot_escape_the_namespace(store):
    with pytest.raises(StoreError):
        await store.keys("../")


async def test_overwrite_replaces_value(store):
    await store.put("k", b"old")
    await store.put("k", b"new")
    assert await store.get("k") == b"new"


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/../b", "", "sp ace"])
async def test_bad_keys_are_refused(store, key):
    with pytest.raises(StoreError):
        await store.put(key, b"x")


async def test_file_store_survives_a_new_instance(tmp_path):
    first = FileStore(tmp_path)
    await first.put_many({"a/b": b"1", "a/c": b"2"})
    second = FileStore(tmp_path)
    assert await second.get("a/b") == b"1"
    assert await second.keys("a/") == ["a/b", "a/c"]
    assert not [p for p in tmp_path.rglob(".tmp-*")]


async def test_redis_store_is_shared_between_clients(clean_redis_url):
    one, two = RedisStore(clean_redis_url), RedisStore(clean_redis_url)
    await one.put("x", b"seen")
    assert await two.get("x") == b"seen"
    await one.close()
    await two.close()


async def test_unreachable_redis_is_a_clear_error(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnavailable, match="127.0.0.1"):
        await open_store(tmp_path, url)


async def test_a_restarted_redis_is_used_at_once_and_a_stopped_one_is_reported():
    """After a restart every pooled connection is dead; no command may fail on one while Redis is up."""
    with redis_process() as redis:
        store = RedisStore(redis.url)
        await asyncio.gather(*(store.put_many({f"k{i}": bytes(1000)}) for i in range(8)))  # several pooled connections
        await asyncio.gather(*(store.get(f"k{i}") for i in range(8)))
        redis.stop()
        with pytest.raises(StoreUnavailable, match=str(redis.port)):
            await store.get("k0")
        redis.start()
        for _ in range(3):
            results = await asyncio.gather(store.get("k1"), store.put("x", b"1"), store.put_many({"y": b"2"}),
                                           store.delete("z"), return_exceptions=True)
            assert results == [bytes(1000), None, None, None]
        await store.close()


def fresh_reader(store):
    """Another client of the same backing store, as another process would see it.

    For files that is a new FileStore on the same directory (an instance
    caches what it read, so each call opens a new one); for Redis a second client.
    """
    if isinstance(store, FileStore):
        return lambda: FileStore(store.root)
    other = RedisStore(store.url)
    return lambda: other


async def test_large_values_round_trip_through_another_client(store):
    big = np.random.default_rng(0).integers(0, 256, 24 * 2**20, dtype=np.uint8).tobytes()
    await store.put_many({"shards/big": big, "datasets/big/manifest": b"{}"})
    reader = fresh_reader(store)()
    assert await reader.get("shards/big") == big
    await reader.close()


async def test_concurrent_writers_never_tear_a_value(store):
    """Many writers at once, several on one key: every key ends as exactly one writer's whole value."""
    values = [bytes([i]) * (256 * 1024 + i) for i in range(12)]
    second = fresh_reader(store)()
    writers = [s.put("contended", v) for s, v in zip([store, second] * 6, values)]
    writers += [store.put(f"own/{i}", v) for i, v in enumerate(values)]
    await asyncio.gather(*writers)
    final = await fresh_reader(store)().get("contended")
    assert final in values
    assert [await store.get(f"own/{i}") for i in range(len(values))] == values
    assert await store.keys("own/") == sorted(f"own/{i}" for i in range(len(values)))
    await second.close()


async def test_put_many_is_never_half_visible_to_a_concurrent_reader(store):
    """Writers name the commit key last; once a reader sees a generation there, it sees it in the rest too."""
    generations = 25
    reader_for = fresh_reader(store)
    seen: list[int] = []

    async def write() -> None:
        for gen in range(1, generations + 1):
            blob = gen.to_bytes(4, "little") * 20_000
            await store.put_many({"group/shard-a": blob, "group/shard-b": blob, "group/manifest": blob})

    async def read() -> None:
        while not seen or seen[-1] < generations:
            reader = reader_for()
            manifest = await reader.get("group/manifest")
            if manifest is not None:
                gen = int.from_bytes(manifest[:4], "little")
                for key in ("group/shard-a", "group/shard-b"):
                    member = await reader_for().get(key)
                    assert member is not None and len(member) == len(manifest)
                    assert int.from_bytes(member[:4], "little") >= gen, f"{key} older than the manifest"
                seen.append(gen)
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(write(), read()), 60)
    assert len(set(seen)) > 1, "the reader never overlapped the writer"
