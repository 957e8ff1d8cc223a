"""Target: kill -9 the master mid-training, start it again: at most N iterations lost, workers come back.

Real processes on loopback for each store backend: `mlitb serve --checkpoint-every N`
(on a real redis-server, or on the file store) and two `mlitb worker`s that are
never restarted. The test reads what survived straight from the store, restarts
the master on the same ports and store, and watches through the HTTP API that
the project resumes from that checkpoint, that both workers reconnect by
themselves and train on, and that test accuracy is not worse. Then a clean
stop (SIGTERM) must lose nothing at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_system import started
from tests.helpers import poll_until
from tests.stored_system import TINY_LAYERS, StoredSystem

N = 5  # checkpoint every N iterations
ITERATION_MS = 300
KILL_AFTER = 3 * N + 2
OPTIMIZER = {"name": "adam", "learning_rate": 0.002}


@pytest.fixture(params=["file", "redis"])
def stored(request, tmp_path: Path):
    redis_url = request.getfixturevalue("clean_redis_url") if request.param == "redis" else None
    with started(StoredSystem(tmp_path, redis_url=redis_url, checkpoint_every=N)) as running:
        yield running


def _last_test_accuracy(metrics: list[dict]) -> tuple[int, float] | None:
    tested = [(m["iteration"], m["test_accuracy"]) for m in metrics if m.get("test_accuracy") is not None]
    return tested[-1] if tested else None


def _contributing(system: StoredSystem, project_id: str, at_least: int) -> dict | None:
    project = system.project(project_id)
    busy = [w for w in project["workers"] if w["accepted"] >= at_least]
    return project if len(busy) == len(system.workers) else None


def test_kill_9_loses_at_most_n_iterations_and_a_clean_stop_loses_none(stored: StoredSystem):
    project_id = stored.create_project(layers=TINY_LAYERS, iteration_ms=ITERATION_MS, optimizer=OPTIMIZER,
                                       eval_every=N)
    workers = [stored.start_worker(project_id) for _ in range(2)]
    pids = [w.proc.pid for w in workers]
    poll_until(lambda: stored.project(project_id)["iteration"] >= KILL_AFTER
               and _last_test_accuracy(stored.metrics(project_id)), timeout=120, what=f"iteration {KILL_AFTER}")

    last_seen = stored.project(project_id)["iteration"]
    stored.kill_server()
    saved = stored.stored_checkpoint(project_id)
    assert saved is not None
    print(f"\nkill -9 seen at iteration {last_seen}: checkpoint at {saved.iteration}, "
          f"{last_seen - saved.iteration} iterations (+1 in flight) lost, N = {N}")
    assert last_seen - N <= saved.iteration <= last_seen + 1
    assert [m["iteration"] for m in saved.metrics] == list(range(saved.iteration)), "history and params disagree"
    _tested_at, accuracy_at_checkpoint = _last_test_accuracy(saved.metrics)

    stored.start()
    assert all(w.proc.poll() is None for w in workers), "workers must outlive the master"
    resumed = poll_until(lambda: _contributing(stored, project_id, at_least=3), timeout=120,
                         what="both workers reconnect and contribute")
    assert resumed["status"] == "running"
    assert [w.proc.pid for w in workers] == pids
    history = stored.metrics(project_id)
    iterations = [m["iteration"] for m in history]
    assert iterations == list(range(len(iterations))), "the resumed history must continue the checkpoint's"
    assert [(m["iteration"], m["train_loss"]) for m in history[:saved.iteration]] == \
        [(m["iteration"], m["train_loss"]) for m in saved.metrics], "the history must be the checkpoint's"

    def tested_after_resume() -> float | None:
        found = _last_test_accuracy(stored.metrics(project_id))
        return found[1] if found and found[0] >= saved.iteration else None

    accuracy = poll_until(tested_after_resume, timeout=120, what="a test evaluation after the resume")
    print(f"test accuracy {accuracy_at_checkpoint:.4f} at the checkpoint, {accuracy:.4f} after the resume")
    assert accuracy >= accuracy_at_checkpoint

    before_stop = stored.project(project_id)["iteration"]
    stored.stop_server()
    clean = stored.stored_checkpoint(project_id)
    assert clean.iteration >= before_stop
    assert [m["iteration"] for m in clean.metrics] == list(range(clean.iteration)), "a clean stop loses nothing"
    stored.start()
    poll_until(lambda: _contributing(stored, project_id, at_least=2), timeout=120,
               what="the workers come back after the clean stop")
    iterations = [m["iteration"] for m in stored.metrics(project_id)]
    assert iterations == list(range(len(iterations)))
    assert all(w.proc.poll() is None for w in workers)
