"""What robust aggregation costs the master per iteration, against today's running-sum mean.

Per (P, K): K random float32 gradient sums with counts. "sum (today)" is the
master's current path (np.add of each result into one running sum, then /Σcount);
the next three stack each result's mean (grad_sum / count) into a (K, P)
matrix as results arrive, then call mlitb.master.aggregation.aggregate with that
rule (weights, client norms, history bound, diagnostics included); "clip (stream)"
folds each result into mlitb.master.aggregation.ClipStream as it arrives (O(P)
memory, the clip radius from the previous iteration) and finishes it.
Median of several repetitions, measured side by side in one run; ratio = row / today.

    python bench/aggregation.py
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np

from mlitb.master.aggregation import (
    AggregationSettings,
    ClipStream,
    NormHistory,
    aggregate,
    client_weights,
)

SIZES = {"softmax": 7_850, "mlp": 407_050}
CLIENTS = (8, 32)
REPEATS = 15


def today(grads: list[np.ndarray], counts: list[int]) -> np.ndarray:
    total = np.zeros(grads[0].size, np.float32)
    for g in grads:
        np.add(total, g, out=total)
    return total / np.float32(sum(counts))


def robust(rule: str):
    settings = AggregationSettings(rule=rule)

    def run(grads: list[np.ndarray], counts: list[int], stack: np.ndarray, previous: np.ndarray,
            history: NormHistory) -> np.ndarray:
        for i, (g, c) in enumerate(zip(grads, counts)):
            np.multiply(g, np.float32(1.0 / c), out=stack[i])
        weights = client_weights(np.array(counts), np.array(counts), settings.max_share)
        return aggregate(stack, weights, settings, previous, history).gradient

    return run


def streamed(grads: list[np.ndarray], counts: list[int], norms: list[float], previous: np.ndarray, tau: float,
             history: NormHistory) -> np.ndarray:
    stream = ClipStream(previous, tau, total_allocated=sum(counts))
    for g, c, n in zip(grads, counts, norms):
        stream.add(g, c, cap=c, grad_norm=n)  # the norm protocol.py computed at parse time
    return stream.finish(history)[0].gradient


def timed(fn, *args) -> float:
    fn(*args)
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn(*args)
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for name, p in SIZES.items():
        for k in CLIENTS:
            counts = [int(c) for c in rng.integers(32, 256, k)]
            grads = [(rng.standard_normal(p) * c).astype(np.float32) for c in counts]
            stack = np.empty((k, p), np.float32)
            previous = (sum(grads) / sum(counts)).astype(np.float32)
            base = timed(today, grads, counts)
            rows.append({"net": name, "P": p, "K": k, "rule": "sum (today)", "ms": base, "ratio": 1.0})
            for rule in ("mean", "centered_clip", "trimmed_mean"):
                history = NormHistory()
                history.record(float(np.linalg.norm(previous)))
                ms = timed(robust(rule), grads, counts, stack, previous, history)
                rows.append({"net": name, "P": p, "K": k, "rule": rule, "ms": ms, "ratio": ms / base})
            history = NormHistory()
            history.record(float(np.linalg.norm(previous)))
            tau = float(np.median([np.linalg.norm(g / c - previous) for g, c in zip(grads, counts)]))
            norms = [float(np.linalg.norm(g)) for g in grads]
            ms = timed(streamed, grads, counts, norms, previous, tau, history)
            rows.append({"net": name, "P": p, "K": k, "rule": "clip (stream)", "ms": ms, "ratio": ms / base})
    print(f"{'net':8} {'P':>8} {'K':>3}  {'rule':14} {'ms':>8} {'× today':>8}")
    for r in rows:
        print(f"{r['net']:8} {r['P']:8,} {r['K']:3}  {r['rule']:14} {r['ms']:8.2f} {r['ratio']:8.2f}")
    print(json.dumps({"bench": "aggregation", "rows": rows}))


if __name__ == "__main__":
    main()
