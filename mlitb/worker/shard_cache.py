"""The worker's shards: downloaded once over HTTP, kept decoded in memory and on disk.

Shards are immutable and named by content hash, so a shard on disk is valid
forever: a worker that restarts or reconnects reports what it already holds
(`hello.cached`) and the master allocates those shards back to it instead of
making it download again. Files are written to a temporary name and renamed,
so several worker processes can share one cache directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable
from http.client import HTTPException
from pathlib import Path

from mlitb.data.shards import Shard, ShardError, decode_shard

DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlitb"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
TIMEOUT_S = 60.0
ATTEMPTS = 3


class DownloadError(Exception):
    """A shard could not be fetched or was not a shard."""


def shard_url(base_url: str, dataset_id: str, shard_id: str) -> str:
    return f"{base_url.rstrip('/')}/datasets/{dataset_id}/shards/{shard_id}"


def fetch_blob(url: str, timeout: float = TIMEOUT_S) -> bytes:
    """GET one shard (blocking; run it in a thread)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


class ShardCache:
    """The shards of one dataset, at most `limit` of them, least recently used evicted first."""

    def __init__(self, directory: Path, dataset_id: str, limit: int) -> None:
        if not _SAFE_ID.match(dataset_id):
            raise ValueError(f"dataset id {dataset_id!r} cannot name a directory")
        self.directory = directory / dataset_id
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dataset_id = dataset_id
        self.limit = max(1, limit)
        self._memory: OrderedDict[str, Shard] = OrderedDict()
        self._on_disk: OrderedDict[str, None] = OrderedDict(
            (p.name, None) for p in sorted(self.directory.iterdir(), key=lambda p: p.stat().st_mtime)
            if _SAFE_ID.match(p.name) and not p.name.startswith(".")
        )

    def ids(self) -> list[str]:
        """Every shard held (on disk or in memory), for `hello.cached` and `cached`."""
        return list(self._on_disk)

    def get(self, shard_id: str) -> Shard | None:
        """The decoded shard, loading it from disk on first use; None if not held or corrupt."""
        shard = self._memory.get(shard_id)
        if shard is None and shard_id in self._on_disk:
            try:
                shard = decode_shard((self.directory / shard_id).read_bytes())
            except (OSError, ShardError):
                self._forget(shard_id)
                return None
            self._memory[shard_id] = shard
        if shard is not None:
            self._memory.move_to_end(shard_id)
            self._on_disk.move_to_end(shard_id)
        return shard

    async def fetch(self, base_url: str, shard_ids: Iterable[str]) -> list[str]:
        """Download the shards not held yet, then evict beyond the limit, sparing `shard_ids`.

        Returns the ids that could not be fetched (the worker reports what it holds; the
        master allocates around the rest).
        """
        wanted = [s for s in dict.fromkeys(shard_ids) if _SAFE_ID.match(s)]
        failed: list[str] = []
        for shard_id in wanted:
            if self.get(shard_id) is not None:
                continue
            try:
                await self._download(base_url, shard_id)
            except DownloadError:
                failed.append(shard_id)
        self.trim(keep=set(wanted))
        return failed

    def trim(self, keep: set[str]) -> None:
        """Evict least recently used shards beyond the limit, never one in `keep`."""
        for shard_id in list(self._on_disk):
            if len(self._on_disk) <= self.limit:
                break
            if shard_id not in keep:
                self._forget(shard_id)

    async def _download(self, base_url: str, shard_id: str) -> None:
        url = shard_url(base_url, self.dataset_id, shard_id)
        error: Exception | None = None
        for _ in range(ATTEMPTS):
            try:
                blob = await asyncio.to_thread(fetch_blob, url)
                shard = decode_shard(blob)
                break
            except (OSError, HTTPException, ShardError) as exc:  # a body cut short is an HTTPException
                error = exc
        else:
            raise DownloadError(f"could not fetch shard {shard_id} from {url}: {error}")
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".part-")
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
        os.replace(tmp, self.directory / shard_id)
        self._memory[shard_id] = shard
        self._on_disk[shard_id] = None

    def _forget(self, shard_id: str) -> None:
        self._memory.pop(shard_id, None)
        self._on_disk.pop(shard_id, None)
        (self.directory / shard_id).unlink(missing_ok=True)
