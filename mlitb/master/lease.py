"""A project's owner through a fenced lease in Redis (Kleppmann, "How to do distributed locking").

Three Redis keys per project, next to the project's own keys:

* ``<ns>:cluster/lease/<project>``: the owning master's id, set with ``NX PX ttl``;
  the owner renews it before it expires.
* ``<ns>:cluster/epoch/<project>``: the fencing token, ``INCR``-ed by every
  acquisition (in the same Lua script, so a lease never exists without its own
  epoch).
* every write of the project's state (``<ns>:projects/<project>/...``) goes
  through `FENCED_WRITE`: applied only while the epoch key still holds the
  writer's epoch. A stale owner (frozen by a GC pause, SIGSTOP, a partition)
  holds an older epoch, so Redis refuses its late writes however late they
  arrive; it then stops its loop (cluster.py).

Everything here is one Redis round trip per call; the pure parts
(`rendezvous_winner`, `Lease.valid`) take no I/O.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mlitb.store import StoreError, StoreUnavailable, check_key

# KEYS: lease, epoch. ARGV: master id, ttl ms. The new epoch, or 0 when someone holds the lease.
ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""

# KEYS: lease, epoch. ARGV: master id, epoch, ttl ms. 1 renewed, 0 lost (another owner or a newer epoch).
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

# KEYS: lease, epoch. ARGV: master id, epoch. Gives the lease up at once (a graceful hand-over).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: epoch, then the keys to write or delete. ARGV: epoch, 'set' or 'del', then one value per key for 'set'.
FENCED_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
for i = 2, #KEYS do
  if ARGV[2] == 'set' then
    redis.call('SET', KEYS[i], ARGV[i + 1])
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


class Fenced(StoreError):
    """A write refused because the writer's epoch is no longer the project's: another master owns it now."""

    def __init__(self, project_id: str, epoch: int) -> None:
        super().__init__(f"write of project {project_id!r} refused: epoch {epoch} is stale, another master owns it")
        self.project_id = project_id
        self.epoch = epoch


@dataclass
class Lease:
    """A lease this master holds: its epoch, and until when (monotonic) it is surely still ours."""

    project_id: str
    epoch: int
    valid_until: float
    acquired_at: float

    def valid(self, now: float | None = None) -> bool:
        """Whether no other master can have taken the project yet (a frozen master sees False on waking)."""
        return (time.monotonic() if now is None else now) < self.valid_until


def rendezvous_winner(project_id: str, masters: Iterable[str]) -> str | None:
    """The master that should own `project_id` among `masters` (highest random weight hashing).

    Every master computes the same answer from the same live set, and when a
    master joins or leaves only the projects it wins or held move.
    """
    best, best_score = None, b""
    for master in masters:
        score = hashlib.sha256(f"{project_id}\0{master}".encode()).digest()
        if best is None or score > best_score:
            best, best_score = master, score
    return best


class LeaseClient:
    """The lease scripts over one redis.asyncio client, under the store's namespace."""

    def __init__(self, redis, namespace: str = "mlitb") -> None:  # redis: redis.asyncio.Redis
        self.redis = redis
        self.namespace = namespace
        self._acquire = redis.register_script(ACQUIRE)
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)
        self._write = redis.register_script(FENCED_WRITE)

    def lease_key(self, project_id: str) -> str:
        return f"{self.namespace}:cluster/lease/{check_key(project_id)}"

    def epoch_key(self, project_id: str) -> str:
        return f"{self.namespace}:cluster/epoch/{check_key(project_id)}"

    async def call(self, coro):
        import redis.exceptions

        try:
            return await coro
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Redis is unreachable: {exc}") from exc

    async def acquire(self, project_id: str, master_id: str, ttl_s: float) -> Lease | None:
        """The lease with a new epoch, or None when another master holds it."""
        sent = time.monotonic()
        epoch = await self.call(self._acquire(keys=[self.lease_key(project_id), self.epoch_key(project_id)],
                                               args=[master_id, int(ttl_s * 1000)]))
        return Lease(project_id, int(epoch), sent + ttl_s, sent) if epoch else None

    async def renew(self, lease: Lease, master_id: str, ttl_s: float) -> bool:
        """Extend the lease; False when it is lost (then stop at once: another master may be running it)."""
        sent = time.monotonic()
        ok = await self.call(self._renew(keys=[self.lease_key(lease.project_id), self.epoch_key(lease.project_id)],
                                          args=[master_id, lease.epoch, int(ttl_s * 1000)]))
        if ok:
            lease.valid_until = sent + ttl_s
        return bool(ok)

    async def release(self, lease: Lease, master_id: str) -> None:
        lease.valid_until = 0.0
        await self.call(self._release(keys=[self.lease_key(lease.project_id), self.epoch_key(lease.project_id)],
                                       args=[master_id, lease.epoch]))

    async def holder(self, project_id: str) -> tuple[str | None, int]:
        """Who holds the lease now (None: nobody) and the project's current epoch."""
        owner, epoch = await self.call(self.redis.mget(self.lease_key(project_id), self.epoch_key(project_id)))
        return (owner.decode() if owner else None), int(epoch or 0)

    async def fenced_write(self, project_id: str, epoch: int, items: Mapping[str, bytes]) -> None:
        """Write store keys (full Redis keys) only while `epoch` is the project's; Fenced otherwise."""
        await self._fenced(project_id, epoch, "set", list(items), list(items.values()))

    async def fenced_delete(self, project_id: str, epoch: int, keys: list[str]) -> None:
        await self._fenced(project_id, epoch, "del", keys, [])

    async def _fenced(self, project_id: str, epoch: int, op: str, keys: list[str], values: list[bytes]) -> None:
        ok = await self.call(self._write(keys=[self.epoch_key(project_id), *keys], args=[epoch, op, *values]))
        if not ok:
            raise Fenced(project_id, epoch)
