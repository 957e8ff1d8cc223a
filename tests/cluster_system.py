"""Several `mlitb serve` masters on one private redis-server, each killable, freezable and restartable.

Every master is a real process with its own ports and `MLITB_PUBLIC_URL`
(cluster mode, docs/deploy.md), a short lease TTL so failover tests stay
short, and a checkpoint every `checkpoint_every` iterations. Tests observe
through the masters' HTTP API and by reading the project's checkpoint and
lease straight from Redis (a sampler thread records every checkpoint
iteration it sees, to check they never go backwards).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import redis

from mlitb.master.checkpoint import Checkpoint
from mlitb.model.zoo import MNIST_SOFTMAX
from tests.e2e_system import WorkerProcess, _env
from tests.helpers import REPO, TOKEN, free_port, poll_until, wait_for_port


@dataclass
class MasterProcess:
    index: int
    port: int = field(default_factory=free_port)
    data_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def id(self) -> str:
        return f"m{self.index}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class ClusterSystem:
    tmp: Path
    redis_url: str
    count: int = 3
    ttl_s: float = 2.0
    checkpoint_every: int = 5
    rebalance_after_s: float = 600.0
    masters: list[MasterProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    def start(self) -> None:
        self.masters = [MasterProcess(i) for i in range(self.count)]
        self.start_master(self.masters[0])  # the first one ingests MNIST into Redis; the others find it there
        for master in self.masters[1:]:
            self.start_master(master)
        poll_until(lambda: len(self.live_masters()) == self.count, timeout=30, what="every master heartbeating")

    def start_master(self, master: MasterProcess) -> None:
        master.starts += 1
        log = open(self.tmp / f"master-{master.index}-{master.starts}.log", "wb")
        env = {**_env(), "MLITB_PUBLIC_URL": master.url, "MLITB_MASTER_ID": master.id,
               "MLITB_LEASE_TTL_S": str(self.ttl_s), "MLITB_LEASE_SCAN_S": "0.25", "MLITB_REBALANCE_AFTER_S": str(self.rebalance_after_s),
               "MLITB_MASTER_URLS": ",".join(m.url for m in self.masters)}
        master.proc = subprocess.Popen(
            [sys.executable, "-m", "mlitb.cli", "serve", "--port", str(master.port), "--data-port",
             str(master.data_port), "--data-dir", str(self.tmp / f"data-{master.index}"), "--redis", self.redis_url,
             "--checkpoint-every", str(self.checkpoint_every)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(master.port, timeout=90, process=master.proc)

    def stop_master(self, master: MasterProcess) -> None:
        """SIGTERM, as an operator would: final checkpoints, then the leases are given up at once."""
        master.proc.send_signal(signal.SIGTERM)
        master.proc.wait(timeout=60)

    def close(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
            worker.proc.wait(timeout=30)
        for master in self.masters:
            if master.alive():
                master.proc.send_signal(signal.SIGCONT)
                master.proc.kill()
                master.proc.wait(timeout=30)

    # ------------------------------------------------------------ observing

    def get(self, master: MasterProcess, path: str) -> Any:
        response = httpx.get(master.url + path, timeout=10, follow_redirects=True)
        response.raise_for_status()
        return response.json()

    def live_masters(self) -> list[dict[str, Any]]:
        for master in self.masters:
            if master.alive():
                try:
                    return self.get(master, "/api/masters")
                except httpx.HTTPError:
                    continue
        return []

    def owner(self, project_id: str) -> tuple[str | None, int]:
        client = redis.Redis.from_url(self.redis_url)
        try:
            owner, epoch = client.mget(f"mlitb:cluster/lease/{project_id}", f"mlitb:cluster/epoch/{project_id}")
        finally:
            client.close()
        return (owner.decode() if owner else None), int(epoch or 0)

    def master(self, master_id: str) -> MasterProcess:
        return next(m for m in self.masters if m.id == master_id)

    def project_on(self, master: MasterProcess, project_id: str) -> dict[str, Any]:
        """The project as `master` shows it (following its redirect to the owner); while it is between
        owners (503) or that master is down, a project that is nowhere: no iteration, no trainers."""
        try:
            return self.get(master, f"/api/projects/{project_id}")
        except httpx.HTTPError:
            return {"iteration": -1, "trainers": -1, "workers": [], "owner": None, "metrics": None}

    def create_project(self, master: MasterProcess, **fields: Any) -> str:
        dataset = next(d for d in httpx.get(f"http://127.0.0.1:{master.data_port}/datasets", timeout=30).json()["datasets"]
                       if d["name"] == "mnist")
        body = {"name": "cluster", "dataset": dataset["id"], "layers": MNIST_SOFTMAX, "status": "running", **fields}
        response = httpx.post(master.url + "/api/projects", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        response.raise_for_status()
        return response.json()["id"]

    def start_worker(self, master: MasterProcess, project_id: str) -> WorkerProcess:
        n = len(self.workers)
        log = self.tmp / f"worker-{n}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlitb.cli", "worker", "--master", master.url, "--project", project_id,
             "--cache-dir", str(self.tmp / f"cache-{n}")],
            cwd=REPO, env=_env(), stdout=open(log, "wb"), stderr=subprocess.STDOUT)
        worker = WorkerProcess(proc, f"worker-{n}", log)
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.tmp.glob("*.log")))


class CheckpointSampler:
    """A thread that reads the project's stored checkpoint every few ms and records each new iteration."""

    def __init__(self, redis_url: str, project_id: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.key = f"mlitb:projects/{project_id}/checkpoint"
        self.iterations: list[int] = []
        self.failure: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.client.close()
        if self.failure is not None and exc[0] is None:
            raise AssertionError(f"the checkpoint sampler stopped early: {self.failure!r}") from self.failure

    def _run(self) -> None:
        try:
            self._sample()
        except Exception as exc:  # surfaced at __exit__: a dead sampler must not pass for "no new checkpoints"
            self.failure = exc

    def _sample(self) -> None:
        last = None
        while not self._stop.is_set():
            try:
                raw = self.client.get(self.key)
            except redis.RedisError:  # a Redis kill or restart in the test (refused, reset, timed out, loading)
                self._stop.wait(0.1)
                continue
            if raw is not None and raw != last:
                last = raw
                self.iterations.append(Checkpoint.decode(raw).iteration)
            self._stop.wait(0.02)  # the sampling period, not a synchronisation


def wait_iterating(system: ClusterSystem, master: MasterProcess, project_id: str, beyond: int,
                   timeout: float = 60) -> dict[str, Any]:
    """Poll `master` until it owns the project and shows an iteration past `beyond`."""

    def check() -> dict[str, Any] | None:
        project = system.project_on(master, project_id)
        return project if project.get("iteration", -1) > beyond and project.get("trainers", -1) >= 0 else None

    return poll_until(check, timeout=timeout, what=f"project {project_id} iterating past {beyond} via {master.url}")


def seconds_since(start: float) -> float:
    return time.monotonic() - start
