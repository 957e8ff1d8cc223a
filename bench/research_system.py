"""A whole mlitb for the issue-15 benchmarks: `mlitb serve` and `mlitb worker` processes on loopback,
driven through the HTTP APIs as a researcher would (bench/transfer.py, bench/new_class.py)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from mlitb.closure import Closure, load_closure
from mlitb.data.catalog import SHIPPED_DIR
from mlitb.model import Net

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    return {**os.environ, "MLITB_ADMIN_TOKEN": TOKEN, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def wait(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def digits_zip(split: str, digits: str) -> bytes:
    """The shipped MNIST `split` with only the images of `digits` (class folders as at upload)."""
    out = io.BytesIO()
    with zipfile.ZipFile(SHIPPED_DIR / f"mnist-{split}.zip") as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[1] in digits and parts[2]:
                target.writestr(name, source.read(name))
    return out.getvalue()


def mnist_test_set() -> tuple[np.ndarray, np.ndarray]:
    """All 2,000 shipped MNIST test images (N, 28, 28, 1) float in [0, 1] and their digits."""
    from PIL import Image

    xs, ys = [], []
    with zipfile.ZipFile(SHIPPED_DIR / "mnist-test.zip") as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[2]:
                xs.append(np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("L"), np.float32) / 255)
                ys.append(int(parts[1]))
    return np.stack(xs)[..., None], np.array(ys)


def accuracy(closure: Closure, x: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """Per test image: whether the closure's net names its digit (class names are the digits)."""
    probs = Net(closure.layers).predict(closure.params, x * closure.normalization.scale * 255 + closure.normalization.offset)
    return np.array([closure.classes[i] for i in probs.argmax(axis=1)]) == digits.astype(str)


class System:
    """`mlitb serve` in a temporary directory, with worker processes on demand."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="mlitb-bench-"))
        self.port, self.data_port = free_port(), free_port()
        self.url, self.data_url = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.data_port}"
        self.procs: list[subprocess.Popen] = []
        self.http = httpx.Client(timeout=300)

    def start(self) -> None:
        log = open(self.tmp / "serve.log", "wb")
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "mlitb.cli", "serve", "--port", str(self.port), "--data-port", str(self.data_port),
             "--data-dir", str(self.tmp / "data")], cwd=REPO, env=env(), stdout=log, stderr=subprocess.STDOUT))
        wait(lambda: self._up(), 120, "mlitb serve starts")

    def _up(self) -> bool:
        try:
            return self.http.get(f"{self.data_url}/datasets").status_code == 200 and \
                self.http.get(f"{self.url}/api/config").status_code == 200
        except httpx.HTTPError:
            return False

    def upload(self, name: str, train: bytes, test: bytes) -> dict[str, Any]:
        response = self.http.post(f"{self.data_url}/datasets", params={"name": name}, headers=ADMIN,
                                  files={"train": ("train.zip", train, "application/zip"),
                                         "test": ("test.zip", test, "application/zip")})
        response.raise_for_status()
        return response.json()

    def append(self, dataset: str, examples: bytes, new_classes: bool) -> dict[str, Any]:
        response = self.http.post(f"{self.data_url}/datasets/{dataset}/examples", headers=ADMIN,
                                  params={"new_classes": "1" if new_classes else "0"},
                                  files={"zip": ("more.zip", examples, "application/zip")})
        response.raise_for_status()
        return response.json()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, self.url + path, json=body, headers=ADMIN)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def closure(self, project_id: str) -> Closure:
        return load_closure(self.http.get(f"{self.url}/api/projects/{project_id}/closure").text)

    def worker(self, project_id: str) -> subprocess.Popen:
        n = len(self.procs)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlitb.cli", "worker", "--master", self.url, "--project", project_id,
             "--cache-dir", str(self.tmp / f"cache-{n}")], cwd=REPO, env=env(),
            stdout=open(self.tmp / f"worker-{n}.log", "wb"), stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop_workers(self, workers: list[subprocess.Popen]) -> None:
        for proc in workers:
            proc.terminate()
            proc.wait(timeout=30)

    def train(self, project_id: str, iterations: int, workers: int) -> list[dict[str, Any]]:
        """Start the project with `workers` fresh worker processes until `iterations` iterations are closed,
        pause it, and return its metrics records (the last one evaluated by the closure download)."""
        procs = [self.worker(project_id) for _ in range(workers)]
        self.api("POST", f"/api/projects/{project_id}/start")
        try:
            wait(lambda: self.api("GET", f"/api/projects/{project_id}")["iteration"] >= iterations, 3600,
                 f"project {project_id} reaches iteration {iterations}")
        finally:
            self.api("POST", f"/api/projects/{project_id}/pause")
            self.stop_workers(procs)
        self.closure(project_id)  # test figures of the final parameters, into the last record
        return self.api("GET", f"/api/projects/{project_id}/metrics")

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.http.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def running() -> System:
    system = System()
    try:
        system.start()
        yield system
    finally:
        system.close()


def tested_at(records: list[dict[str, Any]], iterations: int) -> tuple[int, float]:
    """(iterations done, test accuracy) of the last evaluation after at most `iterations` iterations (under
    load an evaluation can be skipped while the previous one still runs), else the first after."""
    tested = [(m["iteration"] + 1, m["test_accuracy"]) for m in records if m.get("test_accuracy") is not None]
    before = [t for t in tested if t[0] <= iterations]
    return before[-1] if before else next(t for t in tested if t[0] > iterations)
