"""A whole mlitb on loopback for end-to-end tests: `mlitb serve` and worker processes.

Everything is a real process on free ports: the master and data server
(`python -m mlitb.cli serve`) and each worker (`python -m mlitb.cli worker`).
Tests observe the system only through the master's HTTP API, as a researcher
would, and wait for conditions by polling it (`poll_until`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from mlitb.model.zoo import MNIST_CONVNET
from tests.helpers import REPO, TOKEN, free_port, poll_until, wait_for_port

S = TypeVar("S", bound="ProcessSystem")


def _env() -> dict[str, str]:
    """One BLAS thread per process: the tests share two cores with everything else."""
    return {**os.environ, "MLITB_ADMIN_TOKEN": TOKEN, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@dataclass
class WorkerProcess:
    """A worker process and the id the master gave its connection."""

    proc: subprocess.Popen
    id: str
    log: Path


@dataclass
class ProcessSystem:
    """A running `mlitb serve` (restartable on the same ports and data) and its workers."""

    tmp: Path
    port: int = field(default_factory=free_port)
    data_port: int = field(default_factory=free_port)
    server: subprocess.Popen | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = open(self.tmp / f"serve-{self.starts}.log", "wb")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "mlitb.cli", "serve", "--port", str(self.port), "--data-port", str(self.data_port),
             "--data-dir", str(self.tmp / "data")],
            cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, timeout=60, process=self.server)
        wait_for_port(self.data_port, timeout=60, process=self.server)

    def stop_server(self) -> None:
        """SIGTERM, as an operator would: the master checkpoints and closes every socket."""
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(timeout=30)

    def close(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
            worker.proc.wait(timeout=30)
        self.stop_server()

    # ------------------------------------------------------------ the API

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, self.url + path, json=body, timeout=30,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        response.raise_for_status()
        return response.json() if response.content else None

    def create_project(self, **fields: Any) -> str:
        dataset = next(d for d in httpx.get(f"http://127.0.0.1:{self.data_port}/datasets", timeout=30).json()["datasets"]
                       if d["name"] == "mnist")
        body = {"name": "e2e", "dataset": dataset["id"], "layers": MNIST_CONVNET, "status": "running", **fields}
        return self.api("POST", "/api/projects", body)["id"]

    def project(self, project_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/projects/{project_id}")

    def worker_stats(self, project_id: str) -> dict[str, dict[str, Any]]:
        return {w["id"]: w for w in self.project(project_id)["workers"]}

    def metrics(self, project_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/projects/{project_id}/metrics")

    # ------------------------------------------------------------ workers

    def start_worker(self, project_id: str, *extra: str) -> WorkerProcess:
        """Start `mlitb worker` and wait until the master lists its connection."""
        before = set(self.worker_stats(project_id))
        n = len(self.workers)
        log = self.tmp / f"worker-{n}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlitb.cli", "worker", "--master", self.url, "--project", project_id,
             "--cache-dir", str(self.tmp / f"cache-{n}"), *extra],
            cwd=REPO, env=_env(), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        )

        def new_id() -> str | None:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}: {log.read_text()[-2000:]}")
            fresh = set(self.worker_stats(project_id)) - before - {w.id for w in self.workers}
            return min(fresh) if fresh else None  # with --threads N, any one of its connections

        worker = WorkerProcess(proc, poll_until(new_id, timeout=60, what="the master lists the new worker"), log)
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        """Every process's output, for a failing test's report."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.tmp.glob("*.log")))


@contextlib.contextmanager
def started(system: S) -> Iterator[S]:
    """`system` started; afterwards everything is stopped and the logs printed (pytest shows them on failure)."""
    try:
        system.start()
        yield system
    finally:
        system.close()
        print(system.logs())


@pytest.fixture
def process_system(tmp_path: Path) -> Iterator[ProcessSystem]:
    """A started `mlitb serve`; everything is stopped afterwards and the logs shown if the test fails."""
    with started(ProcessSystem(tmp_path)) as running:
        yield running
