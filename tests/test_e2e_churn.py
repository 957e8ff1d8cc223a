"""Target: a SIGKILLed worker's shards are reallocated at once; a newcomer gets a pie-cut and contributes.

The master learns of a killed process only from its socket closing; the
loop must neither wait for its result beyond the deadline nor lose its
shards. A worker that joins mid-run takes shards from the others (there are
no unallocated ones) and returns results within two iterations of admission.
"""

from __future__ import annotations

import signal

from tests.e2e_system import ProcessSystem
from tests.helpers import poll_until

ITERATION_MS = 1000
TRAIN_SHARDS = 32


def test_killed_worker_is_replaced_and_a_newcomer_gets_a_pie_cut(process_system: ProcessSystem):
    project_id = process_system.create_project(iteration_ms=ITERATION_MS, optimizer={"name": "adam", "learning_rate": 0.002})
    workers = [process_system.start_worker(project_id) for _ in range(3)]

    def contributing() -> dict | None:
        project = process_system.project(project_id)
        stats = {w["id"]: w for w in project["workers"]}
        return project if all(stats[w.id]["accepted"] >= 2 for w in workers) else None

    poll_until(contributing, timeout=120, what="three workers contribute")

    # A worker computes for nearly all of every iteration, so a kill now lands mid-computation.
    victim, survivors = workers[0], workers[1:]
    killed_at = process_system.project(project_id)["iteration"]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=10)

    def reallocated() -> dict | None:
        project = process_system.project(project_id)
        stats = {w["id"]: w for w in project["workers"]}
        held = sum(stats[w.id]["shards_allocated"] for w in survivors if w.id in stats)
        return project if victim.id not in stats and held == TRAIN_SHARDS else None

    seen = poll_until(reallocated, timeout=30, interval=0.05, what="the killed worker's shards reallocated")
    assert seen["iteration"] <= killed_at + 2, (killed_at, seen["iteration"])
    going_on = poll_until(lambda: (p := process_system.project(project_id))["iteration"] >= seen["iteration"] + 3 and p,
                          timeout=60, what="training goes on after the kill")
    assert going_on["metrics"]["workers"] == 2, going_on["metrics"]

    # A newcomer: there are no unallocated shards, so it must get a pie-cut of the others' shares.
    before = process_system.worker_stats(project_id)
    newcomer = process_system.start_worker(project_id)

    def admitted() -> int | None:
        project = process_system.project(project_id)
        stats = {w["id"]: w for w in project["workers"]}
        return project["iteration"] if stats.get(newcomer.id, {}).get("state") == "training" else None

    admitted_at = poll_until(admitted, timeout=60, interval=0.05, what="the newcomer is admitted")

    def contributed() -> dict | None:
        project = process_system.project(project_id)
        stats = {w["id"]: w for w in project["workers"]}
        return project if stats[newcomer.id]["accepted"] >= 1 else None

    first = poll_until(contributed, timeout=30, interval=0.05, what="the newcomer contributes")
    after = {w["id"]: w for w in first["workers"]}
    print(f"\nkilled at iteration {killed_at}, reallocated by {seen['iteration']}; newcomer admitted at "
          f"{admitted_at}, first accepted result by {first['iteration']}; shares "
          f"{ {k: v['shards_allocated'] for k, v in after.items()} }")
    assert first["iteration"] <= admitted_at + 2
    assert after[newcomer.id]["shards_allocated"] > 0
    assert sum(w["shards_allocated"] for w in after.values()) == TRAIN_SHARDS
    assert all(after[w.id]["shards_allocated"] <= before[w.id]["shards_allocated"] for w in survivors)
    assert sum(before[w.id]["shards_allocated"] - after[w.id]["shards_allocated"] for w in survivors) \
        == after[newcomer.id]["shards_allocated"]
