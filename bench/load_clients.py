"""What the master-load benchmarks share (bench/master_load.py, bench/master_tier.py): settings, scripted
trainers that speak the protocol over real WebSockets, CPU readings, and MNIST in small shards."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from pathlib import Path

import msgpack
import numpy as np
from websockets.asyncio.client import connect

from mlitb.data.catalog import ingest_and_save
from mlitb.data.ingest import IngestOptions, ZipInput
from mlitb.data.limits import Limits
from mlitb.model.zoo import MNIST_CONVNET, MNIST_MLP
from mlitb.protocol import encode, result_frame
from mlitb.store import FileStore, Store
from tests.helpers import free_port

__all__ = ["free_port"]  # the benches take it from here with the rest

TOKEN = "bench-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
T_MS = 200
SHARD_SIZE = 50  # the shipped MNIST (8,000 train examples) in 160 train shards: data for up to 160 trainers
DATASETS = Path(__file__).resolve().parent.parent / "mlitb" / "datasets"
NETS = {"convnet": (MNIST_CONVNET, 5_994), "mlp": (MNIST_MLP, 407_050)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stop_clients(tasks: list[asyncio.Task]) -> None:
    """Raise what ended a client early (a crashed trainer must not pass for a slow one), then cancel them all."""
    try:
        for task in tasks:
            if task.done():
                task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Frames:
    """One result frame per iteration (and budget), encoded once and sent by every trainer; it reports
    compute_ms = the budget, as a real worker that computed until its budget ran out would."""

    def __init__(self, param_count: int) -> None:
        self.grad = (np.random.default_rng(0).standard_normal(param_count) * 1e-3).astype(np.float32)
        self.cache: dict[tuple[int, int], bytes] = {}

    def result(self, iteration: int, budget_ms: int) -> bytes:
        key = (iteration, budget_ms)
        frame = self.cache.get(key)
        if frame is None:
            if all(k[0] != iteration for k in self.cache):
                self.cache.clear()
            frame = self.cache[key] = result_frame(iteration, self.grad, 64, 64 * 2.3, 6, float(budget_ms))
        return frame


class Moved(Exception):
    """The project is on another master: `url` is its public URL (a tier; never with one master)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def ws_url_of(public_url: str) -> str:
    return public_url.replace("http", "ws", 1).rstrip("/") + "/ws"


async def trainer(url: str, project: str, frames: Frames, worked: asyncio.Event, params_at: list[float] | None,
                  compression: str | None) -> None:
    for _ in range(5):  # a project handed over between masters: follow `moved`, a few times at most
        try:
            return await trainer_session(url, project, frames, worked, params_at, compression)
        except Moved as moved:
            url = ws_url_of(moved.url)
    raise RuntimeError(f"project {project} kept moving between masters")


async def trainer_session(url: str, project: str, frames: Frames, worked: asyncio.Event,
                          params_at: list[float] | None, compression: str | None) -> None:
    async with connect(url, max_size=None, compression=compression, ping_interval=None) as ws:
        await ws.send(encode({"type": "hello", "protocol": 1, "role": "trainer", "project": project,
                              "client": {"kind": "bench", "engine": "none", "cores": 1}}))
        async for raw in ws:
            message = msgpack.unpackb(raw, raw=False)
            kind = message["type"]
            if kind == "params" and params_at is not None:
                params_at.append(time.perf_counter())
            elif kind == "assign":
                await ws.send(encode({"type": "cached", "shards": [s["id"] for s in message["shards"]]}))
            elif kind == "work":
                worked.set()
                await asyncio.sleep(message["budget_ms"] / 1000)  # the compute a real worker would do
                await ws.send(frames.result(message["iteration"], message["budget_ms"]))
            elif kind == "moved" and message.get("url"):
                raise Moved(message["url"])
            elif kind == "error":
                raise RuntimeError(f"the master refused a bench frame: {message}")


async def ingest_small_shards(data_dir: str, store: Store | None = None) -> None:
    """The store `mlitb serve` will open, holding MNIST in small shards (it then ingests nothing itself)."""
    store = store or FileStore(Path(data_dir))
    train, test = DATASETS / "mnist-train.zip", DATASETS / "mnist-test.zip"
    await ingest_and_save(store, ZipInput(train, train.name), ZipInput(test, test.name),
                          IngestOptions(name="mnist", shard_size=SHARD_SIZE), Limits())
    await store.close()
