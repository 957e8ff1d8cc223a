"""The store a clustered master's registry writes through: project state only under the project's epoch.

Reads and writes outside ``projects/<id>/`` go straight to the RedisStore.
A write or delete under ``projects/<id>/`` (definition, checkpoint with its
metrics and allocation) is one Lua script that checks the epoch this master
holds for that project (lease.py); without a lease, or with a stale one, it
raises `Fenced` and tells the cluster (`on_fenced`), which stops the project
here and sends its clients to the new owner.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

from mlitb.master.lease import Fenced, LeaseClient
from mlitb.store import RedisStore, Store


def project_of_key(key: str) -> str | None:
    """`projects/<id>/...` → `<id>`; None for keys that are no project's state."""
    parts = key.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "projects" else None


class FencedStore(Store):
    """A RedisStore whose project writes carry the writer's epoch. See the module docstring."""

    def __init__(self, inner: RedisStore, leases: LeaseClient, epoch_of: Callable[[str], int | None],
                 on_fenced: Callable[[str], None]) -> None:
        self.inner = inner
        self.leases = leases
        self.epoch_of = epoch_of
        self.on_fenced = on_fenced
        self.refused = 0

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes) -> None:
        await self.put_many({key: value})

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        plain: dict[str, bytes] = {}
        by_project: dict[str, dict[str, bytes]] = defaultdict(dict)
        for key, value in items.items():
            project = project_of_key(key)
            if project is None:
                plain[key] = value
            else:
                by_project[project][self.inner.full_key(key)] = value
        if plain:
            await self.inner.put_many(plain)
        refused: Fenced | None = None
        for project, writes in by_project.items():  # one project's refusal does not hold back another's write
            try:
                await self._fenced(project, lambda epoch, w=writes, p=project: self.leases.fenced_write(p, epoch, w))
            except Fenced as exc:
                refused = exc
        if refused is not None:
            raise refused

    async def delete(self, *keys: str) -> None:
        plain = [k for k in keys if project_of_key(k) is None]
        if plain:
            await self.inner.delete(*plain)
        by_project: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            if (project := project_of_key(key)) is not None:
                by_project[project].append(self.inner.full_key(key))
        for project, full in by_project.items():
            await self._fenced(project, lambda epoch, f=full, p=project: self.leases.fenced_delete(p, epoch, f))

    async def _fenced(self, project: str, write) -> None:
        epoch = self.epoch_of(project)
        try:
            if epoch is None:
                raise Fenced(project, 0)
            await write(epoch)
        except Fenced:
            self.refused += 1
            self.on_fenced(project)
            raise

    async def keys(self, prefix: str = "") -> list[str]:
        return await self.inner.keys(prefix)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        """The inner store belongs to serve.py, which closes it."""
