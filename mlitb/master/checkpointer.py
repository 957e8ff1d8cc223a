"""Checkpoint writes that never hold up a project's loop and outlive store outages.

A loop only takes a snapshot (O(P) copies on the event loop, so parameters and
optimizer state belong to one iteration) and hands it here with `save`. One
background task encodes it in a thread and writes it. While the store is
unavailable (Redis restarting, a full disk) training goes on in memory: the
writer keeps only the newest value of each key, retries with exponential
backoff, logs the outage once when it starts and once when it ends, and then
writes whatever is newest. `flush` at shutdown is what makes a clean stop lose
nothing; after a `kill -9` at most `checkpoint_every` iterations are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlitb.backoff import exponential_s
from mlitb.master.checkpoint import Checkpoint
from mlitb.master.lease import Fenced
from mlitb.store import Store, StoreError
from mlitb.tasks import log_crash

log = logging.getLogger("mlitb.master.checkpointer")

Value = bytes | Callable[[], bytes]


@dataclass(frozen=True)
class Policy:
    """When to checkpoint and how to retry: every `every` iterations or `interval_s`, whichever comes first."""

    every: int = 20
    interval_s: float = 3.0
    backoff_base_s: float = 0.1
    backoff_max_s: float = 5.0

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed write in a row (1, 2, ...)."""
        return exponential_s(failures, self.backoff_base_s, self.backoff_max_s)


@dataclass
class Outage:
    """A run of failed writes: reported when it starts and when it ends, not at every retry."""

    started: float
    error: str
    failures: int = 1


@dataclass
class Checkpointer:
    """The newest pending value per store key, written by one background task."""

    store: Store
    policy: Policy = field(default_factory=Policy)
    outage: Outage | None = None
    writes: int = 0
    _pending: dict[str, Value] = field(default_factory=dict)
    _in_flight: frozenset[str] = frozenset()
    _batch_done: asyncio.Event = field(default_factory=asyncio.Event)
    _last_saved: dict[str, float] = field(default_factory=dict)
    _task: asyncio.Task | None = None

    def due(self, key: str, iteration: int) -> bool:
        """Whether to checkpoint `key` at `iteration`: every `every`-th iteration, or `interval_s` after the last.

        A key seen for the first time (a project just created or loaded, so
        stored as it is) starts its clock here.
        """
        last = self._last_saved.setdefault(key, time.monotonic())
        return iteration % self.policy.every == 0 or time.monotonic() - last >= self.policy.interval_s

    def save(self, key: str, snapshot: Checkpoint) -> None:
        """Queue `snapshot` (encoded off the loop); replaces a pending older one."""
        self._last_saved[key] = time.monotonic()
        self.put(key, snapshot.encode)

    def put(self, key: str, value: Value) -> None:
        """Queue a write of bytes, or of what a function returns when called in a thread."""
        self._pending[key] = value
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="checkpointer")
            self._task.add_done_callback(log_crash(log, "the checkpoint writer (the next checkpoint starts it again)"))

    async def drop(self, *keys: str) -> None:
        """Forget pending writes for `keys` and wait out one in flight, so a deleted key stays deleted."""
        for key in keys:
            self._pending.pop(key, None)
            self._last_saved.pop(key, None)
        while self._in_flight & set(keys):
            await self._batch_done.wait()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued value is written; False (and logged) if the store stayed away."""
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                pass
        if self._pending:
            log.error("not written after waiting %.0f s, the store is unavailable (still retrying until shutdown): %s",
                      timeout_s, ", ".join(sorted(self._pending)))
        return not self._pending

    async def close(self) -> None:
        """Stop the writer (after `flush`, which is what saves the last state)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            self._in_flight = frozenset(batch)
            self._batch_done.clear()
            try:
                written = await self._write(batch)
            finally:
                self._in_flight = frozenset()
                self._batch_done.set()
            if not written:
                assert self.outage is not None
                await asyncio.sleep(self.policy.backoff(self.outage.failures))

    async def _write(self, batch: dict[str, Value]) -> bool:
        """One attempt; on failure the values go back to pending unless a newer one arrived meanwhile."""
        blobs = await asyncio.to_thread(_encode_all, batch)
        try:
            await self.store.put_many(blobs)
        except Fenced as exc:  # another master owns the project now: these values must never be written
            log.warning("checkpoint not written: %s", exc)
            return True
        except StoreError as exc:
            for key, blob in blobs.items():
                self._pending.setdefault(key, blob)
            self._failed(exc)
            return False
        self.writes += 1
        if self.outage is not None:
            log.warning("the store is back after %.1f s (%d failed attempts); wrote %s",
                        time.monotonic() - self.outage.started, self.outage.failures, ", ".join(sorted(blobs)))
            self.outage = None
        return True

    def _failed(self, exc: StoreError) -> None:
        if self.outage is None:
            self.outage = Outage(time.monotonic(), str(exc))
            log.warning("checkpoint write failed, training goes on in memory; retrying with backoff: %s", exc)
        else:
            self.outage.failures += 1


def _encode_all(batch: dict[str, Value]) -> dict[str, bytes]:
    return {key: value if isinstance(value, bytes) else value() for key, value in batch.items()}
