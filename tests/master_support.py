"""What the master tests share: a master + data server on real uvicorn over a FileStore holding
the shipped MNIST, and a scripted trainer that speaks the protocol frame by frame."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from mlitb.data.app import create_data_app
from mlitb.data.catalog import ensure_shipped_datasets
from mlitb.data.shards import Shard, decode_shard
from mlitb.master.app import create_master_app
from mlitb.master.settings import Settings
from mlitb.model import Net
from mlitb.model.zoo import MNIST_SOFTMAX
from mlitb.protocol import encode, result_frame
from mlitb.worker.compute import Normalization, gather, recompute
from mlitb.store import FileStore
from tests.helpers import ADMIN, TOKEN, free_port, serve_app

TINY_LAYERS = MNIST_SOFTMAX  # 7,850 parameters, a gradient in milliseconds
TIMEOUT = 15.0


def ingest_mnist(root: Path) -> None:
    """The shipped MNIST in a FileStore at `root` (done once per session, then copied)."""

    async def ingest() -> None:
        store = FileStore(root)
        await ensure_shipped_datasets(store)
        await store.close()

    asyncio.run(ingest())


@dataclass
class System:
    """A running master and data server; `api` talks to the master."""

    store: FileStore
    master_url: str
    data_url: str
    api: httpx.AsyncClient
    dataset: dict[str, Any]
    app: Any

    @property
    def ws_url(self) -> str:
        return self.master_url.replace("http://", "ws://") + "/ws"

    async def create_project(self, **overrides: Any) -> dict[str, Any]:
        body = {"name": "tiny", "dataset": self.dataset["id"], "layers": TINY_LAYERS, "iteration_ms": 2000,
                "optimizer": {"name": "adagrad", "learning_rate": 0.01}, "status": "running", **overrides}
        response = await self.api.post("/api/projects", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        return response.json()

    async def metric(self, name: str, labels: str) -> float:
        text = (await self.api.get("/metrics")).text
        series = f"{name}{{{labels}}} " if labels else f"{name} "
        for line in text.splitlines():
            if line.startswith(series):
                return float(line.split()[-1])
        raise AssertionError(f"{name}{{{labels}}} not in /metrics")

    def runtime(self, project_id: str):
        return self.app.state.registry.projects[project_id]


def copy_store(source: Path, target: Path) -> FileStore:
    shutil.copytree(source, target)
    return FileStore(target)


@contextlib.asynccontextmanager
async def running_system(store: FileStore, **settings: Any) -> AsyncIterator[System]:
    data_port = free_port()
    data_url = f"http://127.0.0.1:{data_port}"
    config = Settings(admin_token=TOKEN, data_url=data_url, **settings)
    app = create_master_app(config, store)
    async with serve_app(create_data_app(store, TOKEN, bootstrap=False), port=data_port):
        async with serve_app(app, read_timeout_s=config.http_read_timeout_s,
                             idle_timeout_s=config.http_idle_timeout_s) as master_url:
            async with httpx.AsyncClient(base_url=master_url, timeout=30) as api:
                datasets = (await api.get(f"{data_url}/datasets")).json()["datasets"]
                mnist = next(d for d in datasets if d["name"] == "mnist")
                yield System(store, master_url, data_url, api, mnist, app)


class Trainer:
    """A scripted client: every frame it sends and expects is explicit in the test."""

    def __init__(self, ws: ClientConnection, data_url: str) -> None:
        self.ws = ws
        self.data_url = data_url
        self.welcome: dict[str, Any] = {}
        self.assigned: list[dict[str, Any]] = []
        self.params: dict[int, np.ndarray] = {}
        self.shards: dict[str, Shard] = {}
        self.errors: list[dict[str, Any]] = []
        self.idle: list[str] = []

    async def send(self, message: dict[str, Any] | bytes | str) -> None:
        await self.ws.send(encode(message) if isinstance(message, dict) else message)

    async def hello(self, project: str | None, role: str = "trainer") -> dict[str, Any]:
        await self.send({"type": "hello", "protocol": 1, "role": role, "project": project,
                         "client": {"kind": "python", "engine": "numpy", "cores": 1, "agent": "test"}})
        self.welcome = await self.expect("welcome")
        return self.welcome

    async def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next frame, recording params, assignments, errors and idles on the way."""
        message = msgpack.unpackb(await asyncio.wait_for(self.ws.recv(), timeout), raw=False)
        kind = message["type"]
        if kind == "params":
            self.params[message["iteration"]] = np.frombuffer(message["params"], "<f4")
        elif kind == "assign":
            self.assigned = message["shards"]
        elif kind == "error":
            self.errors.append(message)
        elif kind == "idle":
            self.idle.append(message["reason"])
        return message

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Skip frames until one of `kind` arrives."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive()
                if message["type"] == kind:
                    return message

    async def fetch_and_cache(self, limit: int | None = None) -> None:
        """Download (the first `limit` of) the assigned shards from the data server, then report them."""
        while not self.assigned:
            await self.expect("assign")
        dataset = self.welcome["dataset"]
        async with httpx.AsyncClient(timeout=30) as http:
            for ref in self.assigned[:limit]:
                blob = (await http.get(f"{dataset['url']}/datasets/{dataset['id']}/shards/{ref['id']}")).content
                self.shards[ref["id"]] = decode_shard(blob)
        await self.send({"type": "cached", "shards": sorted(self.shards)})

    def compute(self, work: dict[str, Any], examples: int = 64) -> bytes:
        """A real result for `work`: the numpy engine on the first examples of its seeded order, in one batch."""
        net = Net(self.welcome["project"]["layers"])
        held = gather([self.shards[s] for s in work["shards"]])
        norm = self.welcome["project"]["normalization"]
        done = recompute(net.gradient, self.params[work["iteration"]], held, Normalization(norm["scale"], norm["offset"]),
                         work["seed"], [min(examples, held.count)])
        return result_frame(work["iteration"], done.grad_sum, done.count, done.loss_sum, done.correct, compute_ms=5.0,
                            batches=done.batches)

    async def barrier(self) -> None:
        """Return once the master has handled every frame sent before (it answers frames in order)."""
        await self.send({"type": "barrier"})
        await self.expect("error")


@contextlib.asynccontextmanager
async def trainer(system: System, project: str | None, cache: bool = True) -> AsyncIterator[Trainer]:
    async with connect(system.ws_url, max_size=None) as ws:
        client = Trainer(ws, system.data_url)
        await client.hello(project)
        if cache:
            await client.fetch_and_cache()
        yield client


def mnist_store_dir(tmp_path_factory) -> Path:
    """One ingested MNIST store per test session, shared by every master test module."""
    root = tmp_path_factory.getbasetemp() / "mnist-store"
    if not (root / "datasets").is_dir():
        ingest_mnist(root)
    return root


# Fixtures for the test modules that import them.

@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    return mnist_store_dir(tmp_path_factory)


@pytest.fixture
async def system(mnist_dir: Path, tmp_path: Path) -> AsyncIterator[System]:
    """A fresh master and data server for each test, on a copy of the ingested MNIST store."""
    async with running_system(copy_store(mnist_dir, tmp_path / "store")) as running:
        yield running
