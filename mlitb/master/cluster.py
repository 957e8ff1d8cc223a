"""Several masters on one Redis: who is alive, who owns which project, and moving projects between them.

Each master runs one `Cluster` task that every `scan_s`:

1. heartbeats ``cluster/masters/<id>`` (its public URL, start time, owned
   projects) with a TTL, so a dead master disappears from `GET /api/masters`;
2. renews the lease of every project it owns (lease.py); a lease it cannot
   renew, or one that ran out while Redis was away, stops the project here at
   once (`lease_valid` also stops the loop's very next boundary, before any
   broadcast, so a master waking from SIGSTOP never steps a project again);
3. claims free projects. Assignment is rendezvous hashing over the live
   masters: a free project is claimed by its winner at once, and by anyone
   after it stayed free for a whole TTL (the winner may be unable to load it).
   On acquiring (epoch + 1) the master loads the last checkpoint and resumes;
4. rebalances with hysteresis: a project whose winner is another master is
   handed over (final checkpoint, lease deleted, clients sent on with `moved`)
   only after that master has been live, and this one has owned the project,
   for `rebalance_after_s`, so a flapping master never makes projects
   ping-pong.

Safety never depends on this timing: every write of a project's state is
fenced by its epoch (fenced_store.py). Timing only decides how fast a dead
owner's projects resume (about one TTL plus one scan).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlitb.master.fenced_store import FencedStore
from mlitb.master.lease import Lease, LeaseClient, rendezvous_winner
from mlitb.protocol import Hello, Moved, moved_frame
from mlitb.security_headers import origin_of
from mlitb.store import RedisStore, StoreError, redis_client

if TYPE_CHECKING:
    from mlitb.master.connection import Connection
    from mlitb.master.registry import Registry
    from mlitb.master.runtime import ProjectRuntime

log = logging.getLogger("mlitb.master.cluster")


@dataclass(frozen=True)
class ClusterSettings:
    """Lease timing. Failover takes about `ttl_s + scan_s`; renewals happen every scan."""

    ttl_s: float = 3.0
    scan_s: float = 0.5
    rebalance_after_s: float = 15.0


@dataclass
class MasterInfo:
    """A live master as its heartbeat says."""

    id: str
    url: str
    since: float
    projects: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "since": self.since, "projects": self.projects}


@dataclass
class Known:
    """What the last scan learned of one stored project (for the lobby and the API on non-owners)."""

    owner: str | None
    epoch: int
    definition: dict[str, Any]


class Cluster:
    """This master's membership, leases and hand-overs. See the module docstring."""

    def __init__(self, redis_url: str, public_url: str, store: RedisStore,
                 settings: ClusterSettings = ClusterSettings(), master_id: str | None = None) -> None:
        self.public_url = public_url.rstrip("/")
        self.id = master_id or secrets.token_hex(6)
        self.settings = settings
        self.store = store
        self.redis = redis_client(redis_url, connect_timeout_s=2, timeout_s=max(1.0, settings.ttl_s / 2))
        self.leases = LeaseClient(self.redis, store.namespace)
        self.fenced = FencedStore(store, self.leases, self.epoch_of, self.on_fenced)
        self.held: dict[str, Lease] = {}
        self.masters: dict[str, MasterInfo] = {}
        self.known: dict[str, Known] = {}
        self.since = time.time()
        self.registry: Registry | None = None
        self._free_since: dict[str, float] = {}
        self._losing: set[str] = set()
        self._task: asyncio.Task | None = None
        self.peers: tuple[str, ...] = ()  # every master's public URL (MLITB_MASTER_URLS), for the pages' CSP

    # ------------------------------------------------------------ keys

    def _master_key(self, master_id: str) -> str:
        return f"{self.store.namespace}:cluster/masters/{master_id}"

    # ------------------------------------------------------------ lifecycle

    def start(self, registry: Registry) -> None:
        self.registry = registry
        self._task = asyncio.create_task(self._run(), name="cluster")

    async def close(self) -> None:
        """After the registry's final checkpoints: give every lease up at once, leave the member list."""
        await self.stop_scanning()
        for lease in list(self.held.values()):
            with contextlib.suppress(StoreError):
                await self.leases.release(lease, self.id)
        self.held.clear()
        with contextlib.suppress(Exception):
            await self.redis.delete(self._master_key(self.id))
        await self.redis.aclose()

    async def stop_scanning(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.scan()
                if failing:
                    log.warning("master %s: Redis answers again, claiming and renewing leases", self.id)
                failing = False
            except Exception as exc:  # noqa: BLE001  # Redis away, or one bad round: membership goes on, the next scan retries
                if not failing:
                    log.warning("master %s: cluster scan failed (%s: %s); projects whose lease runs out stop "
                                "here until Redis answers", self.id, type(exc).__name__, exc)
                failing = True
                await self._drop_expired()
            await asyncio.sleep(self.settings.scan_s)

    # ------------------------------------------------------------ one round

    async def scan(self) -> None:
        await self._heartbeat()
        await self._renew()
        await self._read_masters()
        await self._claim_and_rebalance()

    async def _heartbeat(self) -> None:
        info = MasterInfo(self.id, self.public_url, self.since, sorted(self.held))
        await self.leases.call(self.redis.set(self._master_key(self.id), json.dumps(info.to_json()),
                                               px=int(self.settings.ttl_s * 1000)))

    async def _renew(self) -> None:
        for project_id, lease in list(self.held.items()):
            if not await self.leases.renew(lease, self.id, self.settings.ttl_s):
                await self.lose(project_id, "its lease was taken over")
        await self._drop_expired()

    async def _drop_expired(self) -> None:
        """Leases that ran out without a renewal (Redis away): stop, another master may own them soon."""
        for project_id, lease in list(self.held.items()):
            if not lease.valid():
                await self.lose(project_id, "its lease expired before it could be renewed")

    async def _read_masters(self) -> None:
        pattern = f"{self.store.namespace}:cluster/masters/*"
        keys = [k async for k in self.redis.scan_iter(match=pattern, count=1000)]
        values = await self.leases.call(self.redis.mget(keys)) if keys else []
        masters = {}
        for raw in values:
            if raw:
                data = json.loads(raw)
                masters[data["id"]] = MasterInfo(data["id"], data["url"], float(data["since"]), list(data["projects"]))
        self.masters = masters

    async def _claim_and_rebalance(self) -> None:
        assert self.registry is not None
        ids = [k.split("/")[1] for k in await self.store.keys("projects/") if k.endswith("/definition")]
        live = list(self.masters) or [self.id]
        now = time.monotonic()
        known: dict[str, Known] = {}
        handed_over = False
        for project_id in ids:
            raw = await self.store.get(f"projects/{project_id}/definition")
            if raw is None:
                continue
            owner, epoch = await self.leases.holder(project_id)
            winner = rendezvous_winner(project_id, live)
            if owner is None:
                free_since = self._free_since.setdefault(project_id, now)
                due = winner == self.id or now - free_since >= self.settings.ttl_s
                if due and await self.claim(project_id):
                    owner, epoch = self.id, self.held[project_id].epoch
            else:
                self._free_since.pop(project_id, None)
            known[project_id] = Known(owner, epoch, json.loads(raw))
            lease = self.held.get(project_id)
            if lease is not None and not handed_over and winner != self.id and self._should_hand_over(lease, winner, now):
                handed_over = True  # one per round: the tier settles gradually
                await self.hand_over(project_id, winner)
        self.known = known

    def _should_hand_over(self, lease: Lease, winner: str | None, now: float) -> bool:
        """Hysteresis: the winner has been live, and this master has owned the project, long enough."""
        info = self.masters.get(winner) if winner else None
        wait = self.settings.rebalance_after_s
        return info is not None and time.time() - info.since >= wait and now - lease.acquired_at >= wait

    # ------------------------------------------------------------ owning

    async def claim(self, project_id: str) -> bool:
        """Acquire the lease (epoch + 1), then load the project from its last checkpoint."""
        assert self.registry is not None
        lease = await self.leases.acquire(project_id, self.id, self.settings.ttl_s)
        if lease is None:
            return False
        self.held[project_id] = lease
        self._free_since.pop(project_id, None)
        rt = await self.registry.adopt(project_id)
        if rt is None:  # its dataset is gone, say: let it be, and let others see it free
            del self.held[project_id]
            with contextlib.suppress(StoreError):
                await self.leases.release(lease, self.id)
            return False
        self.fence(rt)
        log.warning("master %s owns project %s (epoch %d) from iteration %d", self.id, project_id, lease.epoch,
                    rt.iteration)
        return True

    async def claim_new(self, project_id: str) -> None:
        """A project being created here: its lease first, so its first writes are fenced like any other."""
        lease = await self.leases.acquire(project_id, self.id, self.settings.ttl_s)
        if lease is None:
            raise StoreError(f"project {project_id!r} is already owned by another master")
        self.held[project_id] = lease

    async def forget(self, project_id: str) -> None:
        """A deleted project: its lease goes (its epoch stays, so a late write of the old state is still refused)."""
        lease = self.held.pop(project_id, None)
        if lease is not None:
            with contextlib.suppress(StoreError):
                await self.leases.release(lease, self.id)

    def fence(self, rt: ProjectRuntime) -> None:
        lease = self.held.get(rt.id)
        rt.cluster = self  # type: ignore[attr-defined]  # the API shows owner and epoch from here
        rt.lease_valid = lease.valid if lease is not None else (lambda: False)

    def epoch_of(self, project_id: str) -> int | None:
        lease = self.held.get(project_id)
        return lease.epoch if lease is not None else None

    def on_fenced(self, project_id: str) -> None:
        """A write was refused: another master owns the project. Stop it here (from the writer's task)."""
        if project_id in self.held and project_id not in self._losing:
            asyncio.get_running_loop().create_task(self.lose(project_id, "a write was refused (stale epoch)"))

    async def lose(self, project_id: str, why: str) -> None:
        """Stop a project this master no longer owns, without writing anything, and send its clients on."""
        if project_id in self._losing:
            return
        self._losing.add(project_id)
        try:
            lease = self.held.pop(project_id, None)
            if lease is not None:
                lease.valid_until = 0.0
            log.warning("master %s stops project %s: %s", self.id, project_id, why)
            assert self.registry is not None
            await self.registry.release(project_id, moved_frame(project_id, None, self.urls()))
        finally:
            self._losing.discard(project_id)

    async def hand_over(self, project_id: str, to: str | None) -> None:
        """Graceful: final checkpoint (fenced), lease deleted, clients told where the project goes."""
        assert self.registry is not None
        url = self.masters[to].url if to in self.masters else None
        await self.registry.hand_over(project_id, moved_frame(project_id, url, self.urls()))
        lease = self.held.pop(project_id, None)
        if lease is not None:
            await self.leases.release(lease, self.id)
        log.warning("master %s handed project %s over to %s", self.id, project_id, to)

    # ------------------------------------------------------------ what others ask

    def urls(self) -> list[str]:
        return sorted({m.url for m in self.masters.values()} | {self.public_url})

    def owner_of(self, project_id: str) -> tuple[MasterInfo | None, int]:
        """The owning master (as last scanned; this one for its own projects) and the epoch."""
        if project_id in self.held:
            return MasterInfo(self.id, self.public_url, self.since, sorted(self.held)), self.held[project_id].epoch
        known = self.known.get(project_id)
        if known is None or known.owner is None or known.owner == self.id:  # (ours but just lost: nobody yet)
            return None, known.epoch if known else 0
        return self.masters.get(known.owner), known.epoch

    def default_project(self) -> str | None:
        """The oldest running stored project (the lobby's choice when a client names none)."""
        running = [(k.definition.get("created", 0), pid) for pid, k in self.known.items()
                   if k.definition.get("status") == "running"]
        return min(running)[1] if running else None

    def peer_origins(self) -> tuple[str, ...]:
        """The other masters a browser page may open a WebSocket to (CSP connect-src), as http and ws origins."""
        origins = []
        for url in self.peers:
            origin = origin_of(url)
            if origin:
                origins += [origin, origin.replace("https://", "wss://").replace("http://", "ws://")]
        return tuple(origins)

    def masters_json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in sorted(self.masters.values(), key=lambda m: m.url)]


class ClusterLobby:
    """The lobby of a clustered master: joins the projects it owns, sends the others' clients on (`moved`)."""

    def __init__(self, registry: Registry, cluster: Cluster) -> None:
        self.registry = registry
        self.cluster = cluster

    def join(self, conn: Connection, hello: Hello):
        project = hello.project
        if project is None and self.registry.default_project() is None:
            project = self.cluster.default_project()
        if project is None or project in self.registry.projects:
            return self.registry.join(conn, hello)
        if project not in self.cluster.known:
            return self.registry.join(conn, hello)  # unknown here and in Redis: the usual unknown_project error
        owner, _epoch = self.cluster.owner_of(project)
        url = owner.url if owner is not None else None
        raise Moved(moved_frame(project, url, self.cluster.urls()),
                    f"project {project!r} is served by {url or 'no master yet'}")


def cluster_from_env(redis_url: str | None, public_url: str | None, store, environ) -> Cluster | None:
    """A Cluster when this master shares Redis with others: `--redis` plus a public URL
    (`--public-url` or MLITB_PUBLIC_URL). Without them, one master owns everything as before."""
    public_url = public_url or environ.get("MLITB_PUBLIC_URL")
    if not redis_url or not public_url or not isinstance(store, RedisStore):
        return None
    settings = ClusterSettings(
        ttl_s=float(environ.get("MLITB_LEASE_TTL_S", ClusterSettings.ttl_s)),
        scan_s=float(environ.get("MLITB_LEASE_SCAN_S", ClusterSettings.scan_s)),
        rebalance_after_s=float(environ.get("MLITB_REBALANCE_AFTER_S", ClusterSettings.rebalance_after_s)))
    cluster = Cluster(redis_url, public_url, store, settings, environ.get("MLITB_MASTER_ID") or None)
    cluster.peers = tuple(u.strip() for u in environ.get("MLITB_MASTER_URLS", "").split(",") if u.strip())
    return cluster
