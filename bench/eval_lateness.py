"""How late the master's loop wakes for a deadline while test-set evaluation runs: none, thread, process.

Run: python bench/eval_lateness.py [seconds per mode] [busy processes]
A stand-in for a project's loop waits for a deadline every 50 ms (as
loop.wait_window does) and records how far past it it runs; meanwhile the
MNIST demo convnet is evaluated on 2,000 test examples back to back (the
worst case: evaluation never idle), either in a thread of this process (the
old design) or in the evaluation process (mlitb/master/evaluator.py). A late
wake-up is exactly what turns a result that reached the socket on time into
one stamped late. `busy processes` spin at normal priority beside it, as
workers on the same small machine do (the slow-client e2e test runs three);
pin the whole run to two cores with `taskset -c 0,1` to see that machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time

import numpy as np

from mlitb.data.shards import encode_shard
from mlitb.master import evaluation
from mlitb.master.evaluator import Evaluator
from mlitb.model import Net
from mlitb.model.zoo import MNIST_CONVNET

PERIOD_S = 0.05
EXAMPLES = 2000


def test_source() -> evaluation.TestSource:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (EXAMPLES, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, EXAMPLES).astype(np.uint8)
    blob = encode_shard(pixels, labels, 10).blob
    return evaluation.TestSource(MNIST_CONVNET, (blob,), {"scale": 1 / 255, "offset": 0.0}, (28, 28, 1), EXAMPLES)


def spin() -> None:
    while True:
        pass


async def lateness(seconds: float) -> list[float]:
    """Milliseconds past each deadline at which the loop runs again."""
    late, deadline, end = [], time.monotonic() + PERIOD_S, time.monotonic() + seconds
    while deadline < end:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        late.append((time.monotonic() - deadline) * 1000)
        deadline += PERIOD_S
    return late


async def run(mode: str, seconds: float, source: evaluation.TestSource, params: np.ndarray) -> tuple[list[float], int]:
    evaluator, net, test = Evaluator(), Net(source.layers), evaluation.decode_test_set(source)
    done = 0

    async def load() -> evaluation.TestSource:
        return source

    async def evaluate_forever() -> None:
        nonlocal done
        while True:
            if mode == "thread":
                await asyncio.to_thread(evaluation.evaluate, net, params, test)
            else:
                await evaluator.evaluate("bench", params, load)
            done += 1

    if mode == "process":
        await evaluator.evaluate("bench", params, load)  # start the process and cache the test set first
    side = asyncio.create_task(evaluate_forever()) if mode != "none" else None
    try:
        return await lateness(seconds), done
    finally:
        if side is not None:
            side.cancel()
        await evaluator.close()


async def main(seconds: float, busy: int) -> None:
    spinners = [multiprocessing.get_context("spawn").Process(target=spin, daemon=True) for _ in range(busy)]
    for proc in spinners:
        proc.start()
    source = test_source()
    params = Net(source.layers).init_params(0)
    print(f"deadline every {PERIOD_S * 1000:.0f} ms for {seconds:.0f} s; evaluation of {EXAMPLES} examples back to back; "
          f"{busy} busy processes")
    print(f"{'mode':8} {'evals':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'>10 ms':>7}")
    for mode in ("none", "thread", "process"):
        late, done = await run(mode, seconds, source, params)
        p50, p90, p99 = np.percentile(late, [50, 90, 99])
        over = sum(1 for x in late if x > 10) / len(late)
        print(f"{mode:8} {done:6d} {p50:8.2f} {p90:8.2f} {p99:8.2f} {max(late):8.2f} {over:7.1%}")
    for proc in spinners:
        proc.terminate()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 15.0, int(sys.argv[2]) if len(sys.argv) > 2 else 0))
