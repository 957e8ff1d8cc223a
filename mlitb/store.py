"""Where state lives: one small async key/value interface, two backends.

Everything mlitb persists (projects, checkpoints, dataset manifests, shard
blobs) goes through a `Store`, so the master and the data server never care
which backend they run on:

* `FileStore` (the default): an in-memory dict backed by files under a data
  directory, each written atomically (temporary file, fsync, rename).
* `RedisStore` (`MLITB_REDIS_URL`): Redis, so several processes share state
  and a restarted master finds it again.

Keys are slash-separated paths such as ``datasets/<id>/manifest``. Values are
bytes; callers encode (JSON, msgpack, raw float32) themselves.

`put_many` is how a group of writes becomes visible together. On Redis it is
one MULTI/EXEC transaction. On files it writes every value to a temporary file
first and renames them in the given order, so a caller that names its
"commit" key last (a dataset's manifest after its shards) never exposes half
a group, even across a crash.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


class StoreError(Exception):
    """A store operation failed; the message says what and where."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached (Redis down, directory not writable)."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the store's namespace or directory."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise StoreError(f"invalid store key {key!r}: use slash-separated names of letters, digits, '_', '-', '.'")
    return key


def check_prefix(prefix: str) -> str:
    """A key prefix is valid when its directory part is a valid key."""
    if "/" in prefix:
        check_key(prefix.rsplit("/", 1)[0])
    if prefix.rsplit("/", 1)[-1] in (".", ".."):
        check_key(prefix)
    return prefix


class Store(ABC):
    """An async key/value store of bytes. See the module docstring."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value at `key`, or None when there is none."""

    @abstractmethod
    async def put(self, key: str, value: bytes) -> None:
        """Write one value."""

    @abstractmethod
    async def put_many(self, items: Mapping[str, bytes]) -> None:
        """Write several values so that they become visible together (see module doc)."""

    @abstractmethod
    async def delete(self, *keys: str) -> None:
        """Remove keys; missing ones are ignored."""

    @abstractmethod
    async def keys(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix`, sorted."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable if the backend cannot be used right now."""

    async def close(self) -> None:
        """Release connections."""


class FileStore(Store):
    """Values in memory, each also written atomically to a file under `root`.

    Reads are served from memory after the first touch, so serving a shard
    costs no disk I/O. The directory is the truth: a new FileStore on the same
    directory sees everything a previous one wrote.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._cache: dict[str, bytes] = {}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create data directory {self.root}: {exc}") from exc

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def get(self, key: str) -> bytes | None:
        if key in self._cache:
            return self._cache[key]
        path = self._path(key)
        try:
            value = await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        self._cache[key] = value
        return value

    async def put(self, key: str, value: bytes) -> None:
        await self.put_many({key: value})

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        paths = {key: self._path(key) for key in items}
        await asyncio.to_thread(_write_files_atomically, paths, items)
        self._cache.update(items)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._cache.pop(key, None)
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            _remove_empty_parents(path.parent, self.root)

    async def keys(self, prefix: str = "") -> list[str]:
        return await asyncio.to_thread(self._list_keys, prefix)

    def _list_keys(self, prefix: str) -> list[str]:
        found = []
        check_prefix(prefix)
        start = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        return sorted(found)

    async def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StoreUnavailable(f"data directory {self.root} is not writable")


def _write_files_atomically(paths: Mapping[str, Path], items: Mapping[str, bytes]) -> None:
    temps: list[tuple[str, Path]] = []
    try:
        for key, path in paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(items[key])
                handle.flush()
                os.fsync(handle.fileno())
            temps.append((tmp, path))
        for tmp, path in temps:
            os.replace(tmp, path)
        for directory in {path.parent for _tmp, path in temps}:
            _fsync_dir(directory)
    except OSError as exc:
        for tmp, _path in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise StoreError(f"could not write to the data directory: {exc}") from exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_empty_parents(directory: Path, root: Path) -> None:
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def redis_client(url: str, connect_timeout_s: float, timeout_s: float):
    """A redis.asyncio client that retries a command once, at once, when its connection is broken.

    After Redis restarts, every pooled connection is dead but looks open, and
    the first command on each fails with "Connection closed by server" although
    Redis is up. One retry on a fresh connection hides that; while Redis is
    really down the retry is refused too and the error goes to the caller.
    Timeouts are not retried (they would only double the wait on a busy server).
    """
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    return redis.from_url(url, socket_connect_timeout=connect_timeout_s, socket_timeout=timeout_s,
                          retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)))


class RedisStore(Store):
    """Values in Redis under `namespace:`; `put_many` is one transaction."""

    def __init__(self, url: str, namespace: str = "mlitb") -> None:
        self.url = url
        self.namespace = namespace
        self._redis = redis_client(url, connect_timeout_s=3, timeout_s=10)

    def _k(self, key: str) -> str:
        return f"{self.namespace}:{check_key(key)}"

    def full_key(self, key: str) -> str:
        """The Redis key of a store key (for Lua scripts that write it, e.g. the fenced writes of lease.py)."""
        return self._k(key)

    async def _call(self, coro):
        import redis.exceptions

        try:
            return await coro
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Redis at {self.url} is unreachable: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        return await self._call(self._redis.get(self._k(key)))

    async def put(self, key: str, value: bytes) -> None:
        await self._call(self._redis.set(self._k(key), value))

    async def put_many(self, items: Mapping[str, bytes]) -> None:
        async def run() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, value in items.items():
                    pipe.set(self._k(key), value)
                await pipe.execute()

        await self._call(run())

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._call(self._redis.delete(*(self._k(k) for k in keys)))

    async def keys(self, prefix: str = "") -> list[str]:
        check_prefix(prefix)

        async def run() -> list[str]:
            start = len(self.namespace) + 1
            pattern = f"{self.namespace}:{_glob_escape(prefix)}*"
            return sorted([k.decode()[start:] async for k in self._redis.scan_iter(match=pattern, count=1000)])

        return await self._call(run())

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


async def open_store(data_dir: str | os.PathLike[str], redis_url: str | None = None) -> Store:
    """The configured store, checked to be usable now.

    With a Redis URL there is no silent fallback: an unreachable Redis raises
    StoreUnavailable with the URL in the message.
    """
    store: Store = RedisStore(redis_url) if redis_url else FileStore(data_dir)
    try:
        await store.ping()
    except StoreUnavailable:
        await store.close()
        raise
    return store
