"""The worker's shard cache against the real data server on uvicorn, serving the shipped MNIST."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mlitb.data import catalog
from mlitb.data.app import create_data_app
from mlitb.data.shards import decode_shard
from mlitb.store import FileStore
from mlitb.worker.shard_cache import ShardCache, fetch_blob, shard_url
from tests.helpers import free_port, serve_app


@pytest.fixture
async def data_server(tmp_path):
    """(base URL, MNIST manifest) of a real data server."""
    store = FileStore(tmp_path / "store")
    manifest = (await catalog.ensure_shipped_datasets(store))[0]
    async with serve_app(create_data_app(store, "token", bootstrap=False)) as url:
        yield url, manifest
    await store.close()


async def test_fetches_decodes_and_keeps_shards_on_disk(data_server, tmp_path):
    url, manifest = data_server
    wanted = [ref.id for ref in manifest.train.shards[:3]]
    cache = ShardCache(tmp_path / "cache", manifest.id, limit=10)
    assert await cache.fetch(url, wanted) == []
    assert sorted(cache.ids()) == sorted(wanted)
    for ref in manifest.train.shards[:3]:
        shard = cache.get(ref.id)
        assert shard.pixels.shape == (ref.count, 28, 28, 1)
        assert shard.labels.max() < len(manifest.classes)
        assert (tmp_path / "cache" / manifest.id / ref.id).stat().st_size == ref.bytes

    # A new process finds them on disk, decodes them lazily and downloads nothing.
    again = ShardCache(tmp_path / "cache", manifest.id, limit=10)
    assert sorted(again.ids()) == sorted(wanted)
    np.testing.assert_array_equal(again.get(wanted[0]).pixels, cache.get(wanted[0]).pixels)


async def test_evicts_least_recently_used_beyond_the_limit_but_never_what_is_assigned(data_server, tmp_path):
    url, manifest = data_server
    ids = [ref.id for ref in manifest.train.shards[:5]]
    cache = ShardCache(tmp_path / "cache", manifest.id, limit=3)
    await cache.fetch(url, ids[:3])
    cache.get(ids[0])  # used again: ids[1] is now the least recently used
    await cache.fetch(url, ids[3:4])
    assert sorted(cache.ids()) == sorted([ids[0], ids[2], ids[3]])
    assert not (tmp_path / "cache" / manifest.id / ids[1]).exists()

    # An assignment larger than the limit is kept whole: the master's allocation wins.
    await cache.fetch(url, ids)
    assert sorted(cache.ids()) == sorted(ids)


async def test_reports_shards_it_could_not_fetch(data_server, tmp_path):
    url, manifest = data_server
    good = manifest.train.shards[0].id
    cache = ShardCache(tmp_path / "cache", manifest.id, limit=10)
    assert await cache.fetch(url, [good, "0" * 32]) == ["0" * 32]
    assert cache.ids() == [good]


async def test_unreachable_server_is_a_failed_fetch_not_a_crash(tmp_path):
    cache = ShardCache(tmp_path / "cache", "mnist-x", limit=10)
    assert await cache.fetch(f"http://127.0.0.1:{free_port()}", ["abc"]) == ["abc"]
    assert cache.ids() == []


async def test_a_server_dying_mid_shard_is_a_failed_fetch_not_a_crash(tmp_path):
    """A master killed while sending a shard cuts the body short: http.client's IncompleteRead is no OSError."""
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: 41252\r\n\r\nPK")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut_short, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        cache = ShardCache(tmp_path / "cache", "mnist-x", limit=10)
        assert await cache.fetch(f"http://127.0.0.1:{port}", ["abc"]) == ["abc"]
    assert cache.ids() == [] and not list((tmp_path / "cache" / "mnist-x").iterdir())


async def test_a_corrupt_file_on_disk_is_forgotten(data_server, tmp_path):
    url, manifest = data_server
    shard_id = manifest.train.shards[0].id
    ShardCache(tmp_path / "cache", manifest.id, limit=10)
    (tmp_path / "cache" / manifest.id / shard_id).write_bytes(b"not a zip")
    cache = ShardCache(tmp_path / "cache", manifest.id, limit=10)
    assert cache.get(shard_id) is None
    assert cache.ids() == []
    await cache.fetch(url, [shard_id])
    blob = await asyncio.to_thread(fetch_blob, shard_url(url, manifest.id, shard_id))
    np.testing.assert_array_equal(cache.get(shard_id).labels, decode_shard(blob).labels)
