"""Target: a worker reconnects by itself when the master restarts, and trains on without downloading again.

The master is stopped (SIGTERM, so it checkpoints) and started again on the
same ports and data directory; the worker, left running, must come back
through its backoff loop, report the shards it caches in `hello`, and be
given work again.
"""

from __future__ import annotations

from tests.e2e_system import ProcessSystem
from tests.helpers import poll_until

ITERATION_MS = 500


def test_worker_reconnects_after_a_master_restart(process_system: ProcessSystem):
    project_id = process_system.create_project(iteration_ms=ITERATION_MS, optimizer={"name": "adam", "learning_rate": 0.002})
    worker = process_system.start_worker(project_id)
    poll_until(lambda: process_system.worker_stats(project_id)[worker.id]["accepted"] >= 3, timeout=120,
               what="the worker contributes")
    stopped_at = process_system.project(project_id)["iteration"]
    process_system.stop_server()
    assert worker.proc.poll() is None, "the worker must outlive the master"

    process_system.start()

    def back() -> dict | None:
        project = process_system.project(project_id)
        trainers = [w for w in project["workers"] if w["accepted"] >= 3]
        return project if trainers else None

    project = poll_until(back, timeout=120, what="the worker is back and contributing")
    (stats,) = project["workers"]
    print(f"\nmaster stopped at iteration {stopped_at}; back with {stats}")
    assert project["iteration"] >= stopped_at
    assert stats["shards_cached"] == stats["shards_allocated"] == 32
    assert worker.proc.poll() is None
    after_restart = worker.log.read_text().split("connection lost", 1)
    assert len(after_restart) == 2, "the worker never noticed the master going away"
    assert "downloading" not in after_restart[1], "the worker downloaded shards it already had"
