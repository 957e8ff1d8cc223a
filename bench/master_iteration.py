"""The master's own work per iteration, for P ~ 10k and P ~ 400k and N trainers.

Runs the real code paths without a network: N `Connection`s whose send
queues simply hold the frames (their sender tasks never run), N result frames
parsed and validated by `parse_client_frame` and added to the running sum by
`ProjectRuntime.on_result`, then one `boundary` (data, join, reduce with
AdaGrad, latency, broadcast: one params encode plus N work frames). Prints
milliseconds per iteration, split into "results" (all N) and "boundary".

    python bench/master_iteration.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import numpy as np

from mlitb.data.manifest import Manifest, ShardRef, Split
from mlitb.master.connection import Connection
from mlitb.master.definition import ProjectDef, parse_optimizer
from mlitb.master.loop import boundary
from mlitb.master.runtime import ProjectRuntime
from mlitb.master.settings import Settings
from mlitb.model.zoo import MNIST_MLP, MNIST_SOFTMAX
from mlitb.protocol import ClientInfo, Hello, parse_client_frame, result_frame

NETS = {
    "softmax (P=7,850)": MNIST_SOFTMAX,
    "mlp 784-512-10 (P=407,050)": MNIST_MLP,
}
TRAINERS = (1, 8, 32)
ITERATIONS = 30


def runtime(layers: list[dict], shards: int) -> ProjectRuntime:
    refs = tuple(ShardRef(f"shard{i:04d}", 250, 40_000) for i in range(shards))
    manifest = Manifest("bench", "bench", tuple(str(i) for i in range(10)), (28, 28, 1),
                        Split(refs, (25 * shards,) * 10), Split((), (0,) * 10), 250, "")
    optimizer = parse_optimizer({"name": "adagrad"}, None)
    definition = ProjectDef("bench", "bench", "bench", layers, 3_600_000, optimizer, {"scale": 1 / 255, "offset": 0.0},
                            10**9, 0, status="running")
    settings = Settings(admin_token="x", data_url="http://bench", max_iteration_ms=3_600_000)
    return ProjectRuntime.build(definition, manifest, settings)


def measure(layers: list[dict], trainers: int) -> tuple[float, float]:
    rt = runtime(layers, shards=max(64, trainers * 2))
    conns = [Connection(ws=None, max_pending=10**9) for _ in range(trainers)]  # type: ignore[arg-type]
    for conn in conns:
        rt.join(conn, Hello("trainer", "bench", ClientInfo()))
    for conn in conns:
        rt.on_cached(conn, tuple(sorted(rt.allocation.trainers[conn.id].allocated)))
    rng = np.random.default_rng(0)
    grad = rng.standard_normal(rt.param_count).astype(np.float32)
    boundary(rt, time.monotonic(), lambda _rt: None)
    results_ms, boundary_ms = [], []
    for _ in range(ITERATIONS):
        frame = result_frame(rt.iteration, grad, 64, 100.0, 10, 500.0)
        start = time.perf_counter()
        for conn in conns:
            rt.on_result(conn, parse_client_frame(frame, param_count=rt.param_count, max_bytes=1 << 30))
        middle = time.perf_counter()
        boundary(rt, time.monotonic(), lambda _rt: None)
        end = time.perf_counter()
        results_ms.append((middle - start) * 1000)
        boundary_ms.append((end - middle) * 1000)
        assert rt.metrics[-1]["workers"] == trainers
    return statistics.median(results_ms), statistics.median(boundary_ms)


async def main() -> None:
    figures = {}
    print(f"{'net':30} {'trainers':>8} {'results ms':>11} {'boundary ms':>12} {'total ms':>9}")
    for name, layers in NETS.items():
        for trainers in TRAINERS:
            results, bound = measure(layers, trainers)
            figures[f"{name} x{trainers}"] = round(results + bound, 3)
            print(f"{name:30} {trainers:>8} {results:>11.2f} {bound:>12.2f} {results + bound:>9.2f}")
    print(json.dumps({"master_iteration_ms": figures}))


if __name__ == "__main__":
    asyncio.run(main())
