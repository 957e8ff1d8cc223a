"""Does robust aggregation cost accuracy on clean data? Plain mean vs centered_clip vs trimmed_mean.

K simulated honest clients each hold 1/K of the shipped MNIST training
shards and, per iteration, compute a gradient over a batch of their own
data with the real numpy engine (the worker's recompute path: the work's
seeded order, one batch); the master's aggregation rule combines their
mean gradients and AdaGrad (the project default) steps. Same initial
parameters, seeds and data for every rule; test accuracy at equal
iterations on the shipped test split. Datasets: MNIST (10 classes) and
"MNIST 0–4 vs 5–9" (2 classes, the same images relabelled).

    python bench/aggregation_accuracy.py [--iterations 150] [--clients 8] [--batch 32] [--nets softmax,convnet]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import numpy as np

from mlitb.data.catalog import ensure_shipped_datasets, get_shard
from mlitb.data.shards import decode_shard
from mlitb.master.aggregation import (
    AggregationSettings,
    NormHistory,
    aggregate,
    client_weights,
)
from mlitb.model import Net
from mlitb.model.zoo import MNIST_CONVNET, MNIST_SOFTMAX
from mlitb.optim import make_optimizer, optimizer_defaults
from mlitb.store import FileStore
from mlitb.worker.compute import Examples, Normalization, gather, recompute

RULES = ("mean", "centered_clip", "trimmed_mean")
NETS = {"softmax": MNIST_SOFTMAX, "convnet": MNIST_CONVNET}


def load() -> tuple[list, list]:
    async def run() -> tuple[list, list]:
        with tempfile.TemporaryDirectory() as root:
            store = FileStore(Path(root))
            manifest = (await ensure_shipped_datasets(store))[0]
            train = [decode_shard(await get_shard(store, r.id)) for r in manifest.train.shards]
            test = [decode_shard(await get_shard(store, r.id)) for r in manifest.test.shards]
            await store.close()
            return train, test

    return asyncio.run(run())


def relabel(examples: Examples, binary: bool) -> Examples:
    return Examples(examples.pixels, (examples.labels >= 5).astype(np.int64) if binary else examples.labels,
                    examples.counts)


def with_classes(layers: list, classes: int) -> list:
    return [*layers[:-1], {**layers[-1], "num_classes": classes}]


def train(layers: list, clients: list[Examples], test: Examples, rule: str, iterations: int, batch: int) -> float:
    net = Net(layers)
    params = net.init_params(1)
    optimizer = make_optimizer("adagrad", optimizer_defaults("adagrad"), net.layout)
    settings = AggregationSettings(rule=rule)
    history, previous = NormHistory(settings.norm_window), None
    norm = Normalization()
    for it in range(iterations):
        means, counts = [], []
        for c, examples in enumerate(clients):
            seed = (it * 7919 + c) & 0xFFFFFFFF  # a fresh work seed per iteration and client
            r = recompute(net.gradient, params, examples, norm, seed, (batch,))
            means.append(r.grad_sum / np.float32(r.count))
            counts.append(r.count)
        weights = client_weights(np.array(counts), np.array(counts), settings.max_share)
        result = aggregate(np.stack(means), weights, settings, previous, history)
        previous = result.gradient
        optimizer.step(params, result.gradient.copy(), 1)
    x = test.pixels.astype(np.float32) / 255
    probs = np.concatenate([net.predict(params, x[i:i + 500]) for i in range(0, len(x), 500)])
    return float((probs.argmax(axis=1) == test.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--nets", default="softmax,convnet")
    args = parser.parse_args()
    train_shards, test_shards = load()
    per = max(1, len(train_shards) // args.clients)
    rows = []
    for binary in (False, True):
        dataset = "mnist 0-4 vs 5-9" if binary else "mnist"
        clients = [relabel(gather(train_shards[c * per:(c + 1) * per]), binary) for c in range(args.clients)]
        test = relabel(gather(test_shards), binary)
        for name in args.nets.split(","):
            layers = with_classes(NETS[name], 2 if binary else 10)
            accuracy = {rule: train(layers, clients, test, rule, args.iterations, args.batch) for rule in RULES}
            rows.append({"dataset": dataset, "net": name, **accuracy,
                         "cc_cost_pp": 100 * (accuracy["mean"] - accuracy["centered_clip"]),
                         "tm_cost_pp": 100 * (accuracy["mean"] - accuracy["trimmed_mean"])})
            r = rows[-1]
            print(f"{dataset:17} {name:8} mean {r['mean']:.4f}  centered_clip {r['centered_clip']:.4f} "
                  f"({-r['cc_cost_pp']:+.2f} pp)  trimmed_mean {r['trimmed_mean']:.4f} ({-r['tm_cost_pp']:+.2f} pp)",
                  flush=True)
    print(json.dumps({"bench": "aggregation_accuracy", "iterations": args.iterations, "clients": args.clients,
                      "batch": args.batch, "rows": rows}))


if __name__ == "__main__":
    main()
