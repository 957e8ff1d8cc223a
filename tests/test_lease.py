"""The fenced lease on a real redis-server: one owner at a time, and a stale owner's writes refused."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from mlitb.master.fenced_store import FencedStore, project_of_key
from mlitb.master.lease import Fenced, LeaseClient, rendezvous_winner
from mlitb.store import RedisStore


async def poll_async(condition, timeout: float, what: str):
    """Await `condition()` until truthy (bounded), polling every 50 ms."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def leases(clean_redis_url):
    client = aioredis.from_url(clean_redis_url)
    yield LeaseClient(client)
    await client.aclose()


async def lease_gone(leases: LeaseClient, project: str) -> bool:
    owner, _epoch = await leases.holder(project)
    return owner is None


async def test_one_owner_and_a_new_epoch_per_acquisition(leases):
    a = await leases.acquire("p1", "master-a", 0.3)
    assert a is not None and a.epoch == 1
    assert await leases.acquire("p1", "master-b", 0.3) is None  # held: nobody else gets it
    assert await leases.holder("p1") == ("master-a", 1)
    await poll_async(lambda: lease_gone(leases, "p1"), 5, "the unrenewed lease expiring")
    assert not a.valid()
    b = await leases.acquire("p1", "master-b", 5)
    assert b is not None and b.epoch == 2
    assert not await leases.renew(a, "master-a", 5)  # the old owner cannot renew what it lost
    assert await leases.renew(b, "master-b", 5)


async def test_a_stale_epochs_write_is_refused(leases, clean_redis_url):
    a = await leases.acquire("p1", "master-a", 0.3)
    await leases.fenced_write("p1", a.epoch, {"mlitb:projects/p1/checkpoint": b"iteration 10 by a"})
    await poll_async(lambda: lease_gone(leases, "p1"), 5, "the unrenewed lease expiring")
    b = await leases.acquire("p1", "master-b", 5)
    await leases.fenced_write("p1", b.epoch, {"mlitb:projects/p1/checkpoint": b"iteration 11 by b"})
    with pytest.raises(Fenced, match="epoch 1 is stale"):
        await leases.fenced_write("p1", a.epoch, {"mlitb:projects/p1/checkpoint": b"iteration 12 by a (late)"})
    with pytest.raises(Fenced):
        await leases.fenced_delete("p1", a.epoch, ["mlitb:projects/p1/checkpoint"])
    store = RedisStore(clean_redis_url)
    try:
        assert await store.get("projects/p1/checkpoint") == b"iteration 11 by b"
    finally:
        await store.close()


async def test_the_fenced_store_refuses_and_tells_the_cluster(leases, clean_redis_url):
    inner = RedisStore(clean_redis_url)
    held: dict[str, int] = {}
    refused: list[str] = []
    store = FencedStore(inner, leases, held.get, refused.append)
    try:
        with pytest.raises(Fenced):  # no lease at all: no write
            await store.put("projects/p1/definition", b"{}")
        lease = await leases.acquire("p1", "me", 5)
        held["p1"] = lease.epoch
        await store.put_many({"projects/p1/definition": b"d", "projects/p1/checkpoint": b"c", "master/x": b"x"})
        assert await inner.get("projects/p1/checkpoint") == b"c" and await inner.get("master/x") == b"x"
        await leases.redis.delete(leases.lease_key("p1"))  # as if it expired, and another master took it:
        other = await leases.acquire("p1", "other", 5)
        assert other.epoch == lease.epoch + 1
        with pytest.raises(Fenced):
            await store.put("projects/p1/checkpoint", b"late")
        assert await inner.get("projects/p1/checkpoint") == b"c"
        assert refused == ["p1", "p1"]
    finally:
        await inner.close()


def test_rendezvous_is_stable_and_moves_only_the_leavers_projects():
    masters = ["m1", "m2", "m3"]
    projects = [f"p{i}" for i in range(60)]
    before = {p: rendezvous_winner(p, masters) for p in projects}
    assert set(before.values()) == set(masters)  # spread over all
    assert before == {p: rendezvous_winner(p, list(reversed(masters))) for p in projects}  # order-free
    after = {p: rendezvous_winner(p, ["m1", "m3"]) for p in projects}
    assert all(after[p] == before[p] for p in projects if before[p] != "m2")
    assert rendezvous_winner("p", []) is None


def test_only_project_state_is_fenced():
    assert project_of_key("projects/abc/checkpoint") == "abc"
    assert project_of_key("datasets/d/manifest") is None
    assert project_of_key("master/admin_token") is None
