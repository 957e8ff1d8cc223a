"""Server-side test metrics: the numpy engine on the dataset's test split.

The master is the only party that sees the test split as a whole, so it is
the one that reports test accuracy. The master only fetches the test shards'
bytes (I/O, on the loop); decoding and the forward passes run in the
evaluation process (evaluator.py), because in a thread of the master their
CPU and GIL time delays the event loop enough to stamp on-time results late.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlitb.data.catalog import shard_key
from mlitb.data.manifest import Manifest
from mlitb.data.shards import decode_shard
from mlitb.model import Net
from mlitb.store import Store

BATCH = 500


@dataclass(frozen=True)
class TestSet:
    """Normalised inputs (N, H, W, C) float32 and labels (N,)."""

    x: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """Mean loss and accuracy over `count` test examples; per class (by label), the accuracy on its test
    examples, None for a class with none (a class the dataset gained after its test split was cut)."""

    loss: float
    accuracy: float
    count: int
    class_accuracy: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class TestSource:
    """What the evaluation process needs to build a project's net and test set (sent once, then cached)."""

    layers: list
    blobs: tuple[bytes, ...]
    normalization: dict[str, float]
    shape: tuple[int, int, int]
    max_examples: int


async def fetch_test_blobs(store: Store, manifest: Manifest, max_examples: int) -> tuple[bytes, ...]:
    """The zipped test shards holding the first `max_examples` test examples, as stored."""
    blobs, total = [], 0
    for ref in manifest.test.shards:
        if total >= max_examples:
            break
        blob = await store.get(shard_key(ref.id))
        if blob is None:
            raise LookupError(f"test shard {ref.id} of dataset {manifest.id} is missing from the store")
        blobs.append(blob)
        total += ref.count
    return tuple(blobs)


def decode_test_set(source: TestSource) -> TestSet:
    """The first `max_examples` test examples, normalised (CPU-bound: runs in the evaluation process)."""
    shards = [decode_shard(blob) for blob in source.blobs]
    if not shards:
        return TestSet(np.zeros((0, *source.shape), np.float32), np.zeros(0, np.int64))
    x = np.concatenate([s.pixels for s in shards])[:source.max_examples].astype(np.float32)
    x *= np.float32(source.normalization["scale"])
    x += np.float32(source.normalization["offset"])
    return TestSet(x, np.concatenate([s.labels for s in shards])[:source.max_examples])


def evaluate(net: Net, params: np.ndarray, test: TestSet) -> Evaluation:
    """Mean cross-entropy and accuracy over the test set (blocking: runs in the evaluation process)."""
    classes = net.num_classes
    if len(test.labels) == 0:
        return Evaluation(float("nan"), float("nan"), 0, (None,) * classes)
    loss, correct = 0.0, 0
    right = np.zeros(classes, np.int64)
    for start in range(0, len(test.labels), BATCH):
        probs = net.predict(params, test.x[start:start + BATCH])
        labels = test.labels[start:start + BATCH]
        picked = probs[np.arange(len(labels)), labels]
        loss -= float(np.log(np.maximum(picked, 1e-12)).sum(dtype=np.float64))
        hits = probs.argmax(axis=1) == labels
        correct += int(hits.sum())
        right += np.bincount(labels[hits], minlength=classes)[:classes]
    count = len(test.labels)
    seen = np.bincount(test.labels, minlength=classes)[:classes]
    per_class = tuple(float(r / n) if n else None for r, n in zip(right, seen))
    return Evaluation(loss / count, correct / count, count, per_class)
