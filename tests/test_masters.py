"""Several masters on one Redis (issue 12), on real processes: failover after kill -9, no split brain.

A private redis-server, `mlitb serve` masters in cluster mode (a 2 s lease),
and `mlitb worker`s that are never restarted and are first pointed at a
master that does not own their project (so they must follow `moved`).
A sampler thread reads the project's checkpoint from Redis throughout: its
iteration must never go backwards (a stale owner's late write would).
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from mlitb.master.lease import rendezvous_winner
from tests.cluster_system import CheckpointSampler, ClusterSystem, wait_iterating
from tests.helpers import TOKEN, poll_until
from tests.redis_process import redis_process

N = 5  # checkpoint every N iterations
ITERATION_MS = 300
OPTIMIZER = {"name": "adam", "learning_rate": 0.002}


@contextlib.contextmanager
def cluster(tmp: Path, count: int, rebalance_after_s: float = 600.0) -> Iterator[ClusterSystem]:
    with redis_process(persist=True) as server:
        system = ClusterSystem(tmp, server.url, count=count, checkpoint_every=N, rebalance_after_s=rebalance_after_s)
        system.redis = server
        try:
            system.start()
            yield system
        finally:
            system.close()
            print(system.logs())


def start_training(system: ClusterSystem, workers: int = 2) -> tuple[str, int]:
    """A project created on master 0 (so it owns it), trained by workers pointed at master 1."""
    owner = system.masters[0]
    project_id = system.create_project(owner, iteration_ms=ITERATION_MS, optimizer=OPTIMIZER, eval_every=N)
    assert system.owner(project_id)[0] == owner.id
    for _ in range(workers):
        system.start_worker(system.masters[1], project_id)  # a non-owner: `moved` sends them on
    project = poll_until(lambda: (p := system.project_on(owner, project_id))["trainers"] == workers
                         and p["iteration"] >= 3 * N and p, timeout=120, what="both workers training on the owner")
    assert project["owner"] == {"id": owner.id, "url": owner.url} and project["epoch"] == 1
    return project_id, project["iteration"]


def assert_never_backwards(iterations: list[int]) -> None:
    assert iterations, "no checkpoint was ever seen"
    assert all(b >= a for a, b in itertools.pairwise(iterations)), f"checkpoint iterations went back: {iterations}"


def test_kill_9_of_the_owner_fails_over_and_the_workers_follow(tmp_path: Path):
    with cluster(tmp_path, 3) as system:
        project_id, _ = start_training(system)
        old = system.masters[0]
        with CheckpointSampler(system.redis_url, project_id) as sampler:
            last_seen = system.project_on(old, project_id)["iteration"]
            old.proc.kill()
            killed = time.monotonic()
            old.proc.wait(timeout=30)
            owner_id, epoch = poll_until(lambda: (o := system.owner(project_id))[0] not in (None, old.id) and o,
                                         timeout=30, what="another master acquiring the lease")
            new = system.master(owner_id)
            resumed = wait_iterating(system, new, project_id, beyond=0)
            resumed_from = resumed["iteration"]
            project = poll_until(lambda: (p := system.project_on(new, project_id))["trainers"] == 2
                                 and p["iteration"] > resumed_from + N and p, timeout=60,
                                 what="both workers training on the new owner")
            print(f"\nkill -9 at iteration {last_seen}: {owner_id} iterates again from {resumed_from} "
                  f"{time.monotonic() - killed:.1f} s later (epoch {epoch})")
        assert epoch == 2 and project["owner"]["id"] == owner_id and project["epoch"] == 2
        assert last_seen - resumed_from <= N + 1  # at most one checkpoint interval lost
        assert all(w.proc.poll() is None for w in system.workers)  # followed by themselves, never restarted
        assert_never_backwards(sampler.iterations)
        masters = system.live_masters()
        assert sorted(m["id"] for m in masters) == sorted(m.id for m in system.masters if m is not old)
        assert project_id in next(m for m in masters if m["id"] == owner_id)["projects"]


def test_split_brain_a_frozen_owner_never_writes_after_losing_its_lease(tmp_path: Path):
    with cluster(tmp_path, 2) as system:
        project_id, _ = start_training(system)
        frozen, other = system.masters
        with CheckpointSampler(system.redis_url, project_id) as sampler:
            frozen.proc.send_signal(signal.SIGSTOP)
            poll_until(lambda: system.owner(project_id) == (other.id, 2), timeout=30,
                       what="the other master taking the lease over (epoch 2)")
            taken_over = wait_iterating(system, other, project_id, beyond=0)["iteration"]
            before_resume = len(sampler.iterations)
            frozen.proc.send_signal(signal.SIGCONT)
            poll_until(lambda: f"stops project {project_id}" in system.logs(), timeout=30,
                       what="the resumed master stopping the project it lost")
            after = poll_until(lambda: (p := system.project_on(other, project_id))["trainers"] == 2
                               and p["iteration"] > taken_over + 2 * N and p, timeout=90,
                               what="the new owner training with both workers after the old one woke")
        assert system.owner(project_id) == (other.id, 2)  # the woken master never took it back
        assert after["owner"]["id"] == other.id
        assert_never_backwards(sampler.iterations)
        assert len(sampler.iterations) > before_resume
        woken = system.get(frozen, "/api/masters")
        assert project_id not in next(m for m in woken if m["id"] == frozen.id)["projects"]
        assert system.project_on(frozen, project_id)["owner"]["id"] == other.id  # its API sends you on


def test_sigterm_hands_over_at_once_and_a_rejoining_master_moves_it_back_only_once(tmp_path: Path):
    with cluster(tmp_path, 2, rebalance_after_s=3.0) as system:
        project_id, _ = start_training(system)
        first, second = system.masters
        with CheckpointSampler(system.redis_url, project_id) as sampler:
            last_seen = system.project_on(first, project_id)["iteration"]
            system.stop_master(first)  # SIGTERM: final checkpoint, lease deleted
            poll_until(lambda: system.owner(project_id) == (second.id, 2), timeout=30, what="the hand-over to m1")
            resumed_from = wait_iterating(system, second, project_id, beyond=0)["iteration"]
            assert resumed_from >= last_seen  # a graceful stop loses nothing
            poll_until(lambda: system.project_on(second, project_id)["trainers"] == 2, timeout=60,
                       what="both workers following to m1")

            system.start_master(first)  # rejoins; the project goes back only if m0 is its rendezvous winner
            expected = rendezvous_winner(project_id, [first.id, second.id])
            expected_epoch = 3 if expected == first.id else 2
            poll_until(lambda: system.owner(project_id) == (expected, expected_epoch), timeout=60,
                       what=f"the project settling on its rendezvous winner {expected}")
            settled_at = system.project_on(system.master(expected), project_id)["iteration"]
            poll_until(lambda: (p := system.project_on(system.master(expected), project_id))["iteration"]
                       > settled_at + 3 * N and p["trainers"] == 2, timeout=90,
                       what="training going on where it settled, with both workers")
        assert system.owner(project_id) == (expected, expected_epoch)  # no ping-pong: it moved at most once
        assert_never_backwards(sampler.iterations)


def test_a_redis_restart_stops_unfenceable_projects_and_they_resume_after(tmp_path: Path):
    with cluster(tmp_path, 2) as system:
        project_id, _ = start_training(system)
        owner = system.masters[0]
        with CheckpointSampler(system.redis_url, project_id) as sampler:
            system.redis.stop()  # kill -9 of Redis; its append-only file keeps the epochs
            poll_until(lambda: f"master {owner.id} stops project {project_id}: its lease expired" in system.logs(),
                       timeout=30, what="the owner stopping the project it can no longer fence")
            stopped_at = len(sampler.iterations)
            system.redis.start()
            owner_id, epoch = poll_until(lambda: (o := system.owner(project_id))[1] >= 2 and o[0] and o, timeout=30,
                                         what="a master acquiring the lease again after the restart")
            back = system.master(owner_id)
            resumed_from = wait_iterating(system, back, project_id, beyond=0)["iteration"]
            poll_until(lambda: (p := system.project_on(back, project_id))["trainers"] == 2
                       and p["iteration"] > resumed_from + 2 * N, timeout=90,
                       what="training going on after the Redis restart with both workers")
        assert epoch == 2
        assert_never_backwards(sampler.iterations)
        assert len(sampler.iterations) > stopped_at


def test_every_master_answers_for_every_project_and_admin_actions_reach_the_owner(tmp_path: Path):
    with cluster(tmp_path, 2) as system:
        owner, other = system.masters
        project_id = system.create_project(owner, iteration_ms=ITERATION_MS, optimizer=OPTIMIZER, eval_every=N)
        listed = poll_until(lambda: [p for p in system.get(other, "/api/projects") if p["id"] == project_id],
                            timeout=30, what="the other master listing the project from Redis")
        assert listed[0]["owner"] == {"id": owner.id, "url": owner.url} and listed[0]["epoch"] == 1
        shown = httpx.get(f"{other.url}/api/projects/{project_id}", timeout=10)  # forwarded, not redirected
        assert shown.status_code == 200 and shown.json()["owner"]["id"] == owner.id and "layers" in shown.json()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        paused = httpx.post(f"{other.url}/api/projects/{project_id}/pause", headers=auth, timeout=30)
        assert paused.status_code == 200 and paused.json()["status"] == "paused"
        assert system.project_on(owner, project_id)["status"] == "paused"  # applied on the owner
        refused = httpx.post(f"{other.url}/api/projects/{project_id}/start", timeout=30)
        assert refused.status_code == 401  # the owner still asks for the token
        patched = httpx.patch(f"{other.url}/api/projects/{project_id}", json={"iteration_ms": 500}, headers=auth,
                              timeout=30)
        assert patched.status_code == 200 and patched.json()["iteration_ms"] == 500
        started = httpx.post(f"{other.url}/api/projects/{project_id}/start", headers=auth, timeout=30)
        assert started.json()["status"] == "running"
        assert system.owner(project_id) == (owner.id, 1)  # nothing moved: the owner applied every action
        masters = system.get(other, "/api/masters")
        assert {m["id"]: m["url"] for m in masters} == {owner.id: owner.url, other.id: other.url}
