"""What `mlitb serve` logs about training: joins, leaves, exclusions, starts and pauses, progress.

An observer, not part of the event loop: `ActivityLog.observe(projects)`
compares what it sees with what it saw last time and logs the differences;
`watch` calls it a few times a second. So the loop's hot path carries no log
calls, and a slow log stream can never delay an iteration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mlitb.logs import progress_line

log = logging.getLogger("mlitb.master")


@dataclass
class _Seen:
    status: str
    workers: dict[str, str] = field(default_factory=dict)  # id -> state
    progress_at: int = -1


@dataclass
class ActivityLog:
    """The last seen state of every project; `observe` logs what changed since."""

    progress_every: int = 10
    seen: dict[str, _Seen] = field(default_factory=dict)

    def observe(self, projects: Iterable[Any]) -> None:
        current = {rt.id: rt for rt in projects}
        for gone in set(self.seen) - set(current):
            log.info("project %s deleted", gone)
            del self.seen[gone]
        for project_id, rt in current.items():
            seen = self.seen.get(project_id)
            if seen is None:
                seen = self.seen[project_id] = _Seen(rt.definition.status, progress_at=rt.iteration)
                log.info("project %s (%s): %s at iteration %d", project_id, rt.definition.name, seen.status, rt.iteration)
            self._status(rt, seen)
            self._workers(rt, seen)
            self._progress(rt, seen)

    def _status(self, rt: Any, seen: _Seen) -> None:
        status = rt.definition.status
        if status != seen.status:
            reason = f" ({rt.error.message})" if status == "paused" and getattr(rt, "error", None) else ""
            log.info("project %s %s at iteration %d%s", rt.id, "started" if status == "running" else status,
                     rt.iteration, reason)
            seen.status = status

    def _workers(self, rt: Any, seen: _Seen) -> None:
        now = {worker_id: worker.state for worker_id, worker in rt.workers.items()}
        for worker_id in now.keys() - seen.workers.keys():
            info = rt.workers[worker_id].info
            log.info("project %s: %s %s joined (%s engine, %s cores); %s", rt.id, info.kind, worker_id,
                     info.engine, info.cores, _trainers(len(now)))
        for worker_id in seen.workers.keys() - now.keys():
            log.info("project %s: %s left; %s", rt.id, worker_id, _trainers(len(now)))
        for worker_id, state in now.items():
            before = seen.workers.get(worker_id)
            if state == "excluded" and before not in (None, "excluded"):
                log.warning("project %s: %s excluded (its results keep missing the deadline)", rt.id, worker_id)
            elif before == "excluded" and state != "excluded":
                log.info("project %s: %s is back in time", rt.id, worker_id)
        seen.workers = now

    def _progress(self, rt: Any, seen: _Seen) -> None:
        if not rt.metrics or rt.iteration < seen.progress_at + self.progress_every:
            return
        seen.progress_at = rt.iteration - rt.iteration % self.progress_every
        record = dict(rt.metrics[-1])
        for older in reversed(rt.metrics):
            if older.get("test_accuracy") is not None:
                record["test_accuracy"] = older["test_accuracy"]
                break
        log.info(progress_line(rt.id, record, len(rt.workers)))


def _trainers(count: int) -> str:
    return f"{count} trainer{'s' if count != 1 else ''}"


async def watch(registry: Any, activity: ActivityLog, every_s: float = 0.5) -> None:
    """Observe the registry's projects every `every_s` seconds until cancelled."""
    while True:
        try:
            activity.observe(list(registry.projects.values()))
        except Exception:  # a log observer must never take the master down
            log.exception("activity log failed")
        await asyncio.sleep(every_s)
