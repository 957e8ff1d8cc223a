"""Target: three Python workers train the shipped MNIST to ≥ 96% test accuracy, bounded in iterations.

Real processes on loopback: `mlitb serve`, three `mlitb worker`s. The master
evaluates on the whole test split (2,000 digits) with the numpy engine every
`EVAL_EVERY` iterations; the test reads those figures from the HTTP API.
"""

from __future__ import annotations

import time

from tests.e2e_system import ProcessSystem
from tests.helpers import poll_until

ITERATION_MS = 500
EVAL_EVERY = 5
MAX_ITERATIONS = 400
OPTIMIZER = {"name": "adam", "learning_rate": 0.002, "l2_decay": 0.0001}


def test_three_workers_reach_96_percent_test_accuracy(process_system: ProcessSystem):
    project_id = process_system.create_project(iteration_ms=ITERATION_MS, optimizer=OPTIMIZER, eval_every=EVAL_EVERY)
    started = time.monotonic()
    workers = [process_system.start_worker(project_id) for _ in range(3)]

    def reached() -> tuple[int, float] | None:
        project = process_system.project(project_id)
        latest = project["metrics"] or {}
        accuracy = latest.get("test_accuracy")
        if accuracy is not None and accuracy >= 0.96:
            return latest["test_iteration"], accuracy
        assert project["iteration"] <= MAX_ITERATIONS, f"iteration {project['iteration']}: test accuracy {accuracy}"
        return None

    iteration, accuracy = poll_until(reached, timeout=900, interval=0.5, what="96% test accuracy")
    wall_s = time.monotonic() - started
    stats = process_system.worker_stats(project_id)
    history = process_system.metrics(project_id)
    examples = sum(m["examples_per_s"] * m["iteration_ms"] / 1000 for m in history)
    print(f"\n96% target: test accuracy {accuracy:.4f} at iteration {iteration} after {wall_s:.0f} s, "
          f"{examples:,.0f} examples; workers: "
          + ", ".join(f"{w['examples_per_s']:.0f} ex/s, {w['accepted']} results" for w in stats.values()))
    assert all(stats[w.id]["accepted"] > 0 for w in workers), stats
