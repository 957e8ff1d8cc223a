"""Failover of a training project: kill -9 its owner N times in a row, measure time to resume and iterations lost.

Real processes: a private redis-server (append-only), 3 `mlitb serve` masters in
cluster mode, 2 `mlitb worker`s pointed at one master and never restarted, an
MNIST softmax project (300 ms iterations, a checkpoint every 5). Each round:
note the owner's iteration, kill -9 it, poll (every 50 ms) until another master
shows the project iterating past the iteration it resumed from, then start the
killed master again on its ports. Time to resume is from the kill to that first
new iteration (lease TTL included); iterations lost is the last iteration seen
before the kill minus the one resumed from. Runs each lease TTL side by side.

    PYTHONPATH=. python3 bench/failover.py [--kills 10] [--ttls 1,2,3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster_system import ClusterSystem
from tests.helpers import poll_until
from tests.redis_process import redis_process

N = 5
ITERATION_MS = 300


def iteration_on(system: ClusterSystem, master, project_id: str) -> int | None:
    try:
        project = system.project_on(master, project_id)
    except httpx.HTTPError:
        return None
    owner = project.get("owner") or {}
    return project.get("iteration") if owner.get("id") == master.id else None


def run(ttl_s: float, kills: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="mlitb-failover-") as tmp, redis_process(persist=True) as server:
        system = ClusterSystem(Path(tmp), server.url, count=3, ttl_s=ttl_s, checkpoint_every=N)
        try:
            system.start()
            project_id = system.create_project(system.masters[0], iteration_ms=ITERATION_MS,
                                               optimizer={"name": "adam", "learning_rate": 0.002}, eval_every=50)
            for _ in range(2):
                system.start_worker(system.masters[1], project_id)
            times, lost = [], []
            for _ in range(kills):
                owner_id = poll_until(lambda: system.owner(project_id)[0], timeout=60, what="an owner")
                owner = system.master(owner_id)
                poll_until(lambda o=owner: (p := system.project_on(o, project_id))["trainers"] == 2 and
                           p["iteration"] >= 2 * N, timeout=120, what="two trainers on the owner")
                last_seen = system.project_on(owner, project_id)["iteration"]
                owner.proc.kill()
                killed = time.monotonic()
                owner.proc.wait(timeout=30)
                new_id = poll_until(lambda old=owner_id: (o := system.owner(project_id)[0]) not in (None, old) and o,
                                    timeout=60, what="a new owner")
                new = system.master(new_id)
                resumed_from = poll_until(lambda m=new: iteration_on(system, m, project_id), timeout=60,
                                          what="the project on the new owner")
                poll_until(lambda m=new, r=resumed_from: (i := iteration_on(system, m, project_id)) is not None and i > r,
                           timeout=60, what="an iteration on the new owner", interval=0.05)
                times.append(time.monotonic() - killed)
                lost.append(max(0, last_seen - resumed_from))
                system.start_master(owner)
        finally:
            system.close()
    return {"ttl_s": ttl_s, "kills": kills, "median_s": statistics.median(times), "max_s": max(times),
            "lost_median": statistics.median(lost), "lost_max": max(lost), "times": times, "lost": lost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--ttls", default="1,2,3")
    args = parser.parse_args()
    results = [run(float(ttl), args.kills) for ttl in args.ttls.split(",")]
    base = results[0]["median_s"]
    print(f"{'lease ttl':>9} {'kills':>5} {'median s':>9} {'max s':>7} {'vs first':>8} {'lost median':>11} {'lost max':>8}")
    for r in results:
        print(f"{r['ttl_s']:>9.1f} {r['kills']:>5} {r['median_s']:>9.2f} {r['max_s']:>7.2f} {r['median_s'] / base:>8.2f} "
              f"{r['lost_median']:>11.1f} {r['lost_max']:>8}")
    print(json.dumps({"bench": "failover", "checkpoint_every": N, "iteration_ms": ITERATION_MS,
                      "results": [{k: v for k, v in r.items() if k not in ("times", "lost")} for r in results]}))


if __name__ == "__main__":
    main()
