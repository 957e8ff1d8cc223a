"""The store contract: both backends pass the same suite."""

from __future__ import annotations

import pytest

from mlitb.store import FileStore, RedisStore, StoreError, StoreUnavailable, open_store
from tests.helpers import free_port


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
    await store.delete_prefix("datasets/d1/")
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
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1"):
        await open_store(tmp_path, url)
