"""The work's example order: the spec in docs/protocol.md, the shared vectors, and the batch list check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlitb.work_order import (
    MAX_BATCHES,
    batch_seed,
    batch_seeds,
    check_batches,
    example_order,
    locate,
    prefix,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "order" / "work_order.json").read_text())["cases"]


def mulberry32_scalar(seed: int):
    """The JS generator transcribed with Python ints (rng.py's docstring), yielding the uint32 draws."""
    a = seed & 0xFFFFFFFF

    def imul(x: int, y: int) -> int:
        return (x * y) & 0xFFFFFFFF

    def draw() -> int:
        nonlocal a
        a = (a + 0x6D2B79F5) & 0xFFFFFFFF
        t = imul(a ^ (a >> 15), 1 | a)
        t = ((t + imul(t ^ (t >> 7), 61 | t)) & 0xFFFFFFFF) ^ t
        return t ^ (t >> 14)

    return draw


def reference_order(counts: list[int], seed: int) -> list[int]:
    """The spec, written as plainly as possible: Fisher–Yates with j = floor(r·(i+1) / 2^32)."""
    n = sum(counts)
    order, draw = list(range(n)), mulberry32_scalar(seed)
    for i in range(n - 1, 0, -1):
        j = (draw() * (i + 1)) >> 32
        order[i], order[j] = order[j], order[i]
    return order


@pytest.mark.parametrize("counts,seed", [([1], 0), ([5], 1), ([3, 4], 7), ([100, 3, 50], 0xFFFFFFFF), ([2000], 99)])
def test_order_follows_the_spec(counts, seed):
    assert example_order(counts, seed).tolist() == reference_order(counts, seed)


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: f"{c['counts'][:3]}-{c['seed']}")
def test_shared_vectors(case):
    order = example_order(case["counts"], case["seed"])
    assert order[:len(case["head"])].tolist() == case["head"]
    assert sum((i + 1) * int(v) for i, v in enumerate(order.tolist())) % 2**32 == case["checksum"]
    shard, example = prefix(case["counts"], case["seed"], len(case["head"]))
    assert [[int(s), int(e)] for s, e in zip(shard, example)] == case["located"]
    assert batch_seeds(case["seed"], case["batches"]) == case["batch_seeds"]


def test_order_is_a_permutation_and_depends_on_the_seed():
    a, b = example_order([300, 200], 1), example_order([300, 200], 2)
    assert sorted(a.tolist()) == list(range(500))
    assert a.tolist() != b.tolist()


def test_shards_are_concatenated_in_list_order():
    shard, example = locate([3, 0, 2], np.array([0, 2, 3, 4]))
    assert shard.tolist() == [0, 0, 2, 2] and example.tolist() == [0, 2, 0, 1]


def test_batch_seed_wraps_like_the_js_expression():
    assert batch_seed(0, 1) == 0x9E3779B9
    assert batch_seed(0xFFFFFFFF, 2) == (0xFFFFFFFF + 2 * 0x9E3779B9) % 2**32


def test_a_prefix_is_at_most_one_pass():
    with pytest.raises(ValueError, match="at most one pass"):
        prefix([3, 4], 1, 8)


@pytest.mark.parametrize("batches,count,why", [
    ([], 0, "non-empty"),
    ([4, 0], 4, ">= 1"),
    ([4, True], 5, ">= 1"),
    ([4, 2.0], 6, ">= 1"),
    ([4, 4], 9, "sums to 8"),
    ([1] * (MAX_BATCHES + 1), MAX_BATCHES + 1, "at most"),
    ("4", 4, "non-empty list"),
])
def test_bad_batch_lists_are_named(batches, count, why):
    assert why in check_batches(batches, count)


def test_a_good_batch_list_passes():
    assert check_batches([32, 32, 7], 71) is None
