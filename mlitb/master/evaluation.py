"""Server-side test metrics: the numpy engine on the dataset's test split, in a thread.

The master is the only party that sees the test split as a whole, so it is
the one that reports test accuracy; it runs off the event loop because a
forward pass over thousands of examples takes far longer than an iteration's
bookkeeping.
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
    loss: float
    accuracy: float
    count: int


async def load_test_set(store: Store, manifest: Manifest, normalization: dict[str, float], max_examples: int) -> TestSet:
    """The first `max_examples` test examples, decoded once per project."""
    pixels, labels, total = [], [], 0
    for ref in manifest.test.shards:
        if total >= max_examples:
            break
        blob = await store.get(shard_key(ref.id))
        if blob is None:
            raise LookupError(f"test shard {ref.id} of dataset {manifest.id} is missing from the store")
        shard = decode_shard(blob)
        pixels.append(shard.pixels)
        labels.append(shard.labels)
        total += len(shard.labels)
    if not pixels:
        return TestSet(np.zeros((0, *manifest.shape), np.float32), np.zeros(0, np.int64))
    x = np.concatenate(pixels)[:max_examples].astype(np.float32)
    x *= np.float32(normalization["scale"])
    x += np.float32(normalization["offset"])
    return TestSet(x, np.concatenate(labels)[:max_examples])


def evaluate(net: Net, params: np.ndarray, test: TestSet) -> Evaluation:
    """Mean cross-entropy and accuracy over the test set (blocking: call in a thread)."""
    if len(test.labels) == 0:
        return Evaluation(float("nan"), float("nan"), 0)
    loss, correct = 0.0, 0
    for start in range(0, len(test.labels), BATCH):
        probs = net.predict(params, test.x[start:start + BATCH])
        labels = test.labels[start:start + BATCH]
        picked = probs[np.arange(len(labels)), labels]
        loss -= float(np.log(np.maximum(picked, 1e-12)).sum(dtype=np.float64))
        correct += int((probs.argmax(axis=1) == labels).sum())
    count = len(test.labels)
    return Evaluation(loss / count, correct / count, count)
