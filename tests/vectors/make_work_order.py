"""Writes tests/vectors/order/work_order.json from mlitb/work_order.py (run: python3 -m tests.vectors.make_work_order).

The JS test (tests/js/work_order.test.mjs) and the Python test both check
these vectors, so the two implementations cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlitb.work_order import batch_seeds, example_order, prefix

CASES = [
    ([1], 5, [1]),
    ([2], 0, [1, 1]),
    ([3, 4], 7, [2, 5]),
    ([100, 100, 37], 123456789, [4, 32, 64, 137]),
    ([500, 500], 0xFFFFFFFF, [1, 999]),
    ([60000], 2024, [128] * 10),
    ([7, 0, 9], 3000000000, [16]),
]
HEAD = 40


def main() -> None:
    cases = []
    for counts, seed, batches in CASES:
        order = example_order(counts, seed)
        k = min(HEAD, len(order))
        shard, example = prefix(counts, seed, k)
        cases.append({
            "counts": counts,
            "seed": seed,
            "head": order[:k].tolist(),
            "checksum": int(sum((i + 1) * int(v) for i, v in enumerate(order.tolist())) % 2**32),
            "located": [[int(s), int(e)] for s, e in zip(shard, example)],
            "batches": batches,
            "batch_seeds": batch_seeds(seed, batches),
        })
    path = Path(__file__).parent / "order" / "work_order.json"  # apart from the engine vectors (*.json here)
    path.write_text("{\"cases\": [\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]}\n")


if __name__ == "__main__":
    main()
