"""`mlitb worker` as a person runs it: several trainer processes, and a clean leave on SIGTERM / Ctrl-C."""

from __future__ import annotations

import signal

import pytest

from tests.e2e_system import ProcessSystem
from tests.helpers import poll_until


def test_threads_start_that_many_trainers_which_all_contribute(process_system: ProcessSystem):
    project_id = process_system.create_project(iteration_ms=500, optimizer={"name": "adam", "learning_rate": 0.002})
    first = process_system.start_worker(project_id, "--threads", "2")

    def both_contribute() -> list | None:
        workers = process_system.worker_stats(project_id).values()
        return list(workers) if len(workers) == 2 and all(w["accepted"] >= 2 for w in workers) else None

    workers = poll_until(both_contribute, timeout=120, what="two trainer connections contribute")
    assert sum(w["shards_allocated"] for w in workers) == 32
    assert first.id in {w["id"] for w in workers}

    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=30) == 0
    poll_until(lambda: not process_system.worker_stats(project_id), timeout=30, what="both trainers leave")
    log = first.log.read_text()
    assert log.count("left") == 2, log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_single_worker_leaves_cleanly(process_system: ProcessSystem, sig: signal.Signals):
    project_id = process_system.create_project(iteration_ms=500, optimizer={"name": "adam", "learning_rate": 0.002})
    worker = process_system.start_worker(project_id)
    poll_until(lambda: process_system.worker_stats(project_id)[worker.id]["accepted"] >= 2, timeout=120,
               what="the worker contributes")
    worker.proc.send_signal(sig)
    assert worker.proc.wait(timeout=30) == 0
    poll_until(lambda: worker.id not in process_system.worker_stats(project_id), timeout=30, what="the master sees it leave")
    assert "trainer 0: left" in worker.log.read_text()
