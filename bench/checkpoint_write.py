"""How long a checkpoint of the MNIST demo convnet takes: snapshot on the loop, encode, write; both stores.

Run: python bench/checkpoint_write.py [redis://127.0.0.1:6379/0]
The snapshot is the only part on the event loop; encode and write run in the
background (mlitb/master/checkpointer.py). The metric history grows with the
run, so it is measured at a few lengths.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

import numpy as np

from mlitb.master.checkpoint import Checkpoint
from mlitb.model import Net
from mlitb.model.zoo import MNIST_CONVNET
from mlitb.optim import make_optimizer
from mlitb.store import FileStore, RedisStore, Store

REPEATS = 20


def history_of(length: int) -> list[dict]:
    return [{"iteration": i, "time": 1.7e9 + i, "train_loss": 0.3, "train_accuracy": 0.9, "test_loss": None,
             "test_accuracy": None, "examples_per_s": 5000.0, "workers": 4, "iteration_ms": 1500.0}
            for i in range(length)]


def snapshot(params: np.ndarray, state: dict, metrics: list[dict]) -> Checkpoint:
    """What ProjectRuntime.snapshot copies on the loop."""
    return Checkpoint(len(metrics), params.copy(), state, {"w1": [f"s{i}" for i in range(32)]}, list(metrics))


async def measure(store: Store, name: str, params: np.ndarray, state: dict) -> None:
    for history in (100, 10_000, 100_000):
        metrics = history_of(history)
        start = time.perf_counter()
        for _ in range(REPEATS):
            snap = snapshot(params, state, metrics)
        snap_ms = (time.perf_counter() - start) / REPEATS * 1000
        start = time.perf_counter()
        for _ in range(REPEATS):
            blob = snap.encode()
        encode_ms = (time.perf_counter() - start) / REPEATS * 1000
        start = time.perf_counter()
        for _ in range(REPEATS):
            await store.put("projects/bench/checkpoint", blob)
        write_ms = (time.perf_counter() - start) / REPEATS * 1000
        print(f"{name:5s} history {history:>7,}: {len(blob) / 1e6:6.2f} MB  snapshot {snap_ms:6.2f} ms  "
              f"encode {encode_ms:6.2f} ms  write {write_ms:6.2f} ms")


async def main() -> None:
    net = Net(MNIST_CONVNET)
    params = net.init_params(0)
    state = make_optimizer("adagrad", {"learning_rate": 0.01}, net.layout).state_dict()
    print(f"MNIST demo convnet: P = {net.param_count:,} parameters")
    with tempfile.TemporaryDirectory() as root:
        await measure(FileStore(root), "file", params, state)
    if len(sys.argv) > 1:
        redis = RedisStore(sys.argv[1])
        await measure(redis, "redis", params, state)
        await redis.delete("projects/bench/checkpoint")
        await redis.close()


if __name__ == "__main__":
    asyncio.run(main())
