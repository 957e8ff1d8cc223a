"""Does `mlitb worker --threads N` need processes? Threads and processes side by side.

Runs the worker's budgeted compute loop (the MNIST demo convnet, one BLAS
thread each) in 1 trainer, then N threads of one process, then N spawned
processes, and prints examples/s and the speed-up over one trainer.

    python bench/worker_scaling.py [N ...]      (default: 2 4)
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

from mlitb.closure import Normalization
from mlitb.model import Net  # noqa: E402
from mlitb.model.zoo import MNIST_CONVNET  # noqa: E402
from mlitb.worker.compute import WorkExamples, compute  # noqa: E402

BUDGET_MS = 3000


def trainer_rate(results: multiprocessing.Queue | list | None = None) -> float:
    """WorkExamples/s of one trainer computing for BUDGET_MS on random digits."""
    net = Net(MNIST_CONVNET)
    rng = np.random.default_rng(0)
    examples = WorkExamples(rng.integers(0, 256, (2000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 2000))
    result = compute(net.gradient, net.init_params(1), examples, BUDGET_MS, Normalization(), rng=rng)
    rate = result.count / (result.compute_ms / 1000)
    if isinstance(results, list):
        results.append(rate)
    elif results is not None:
        results.put(rate)
    return rate


def threads(n: int) -> float:
    rates: list[float] = []
    pool = [threading.Thread(target=trainer_rate, args=(rates,)) for _ in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(rates)


def processes(n: int) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    pool = [context.Process(target=trainer_rate, args=(queue,)) for _ in range(n)]
    for p in pool:
        p.start()
    rates = [queue.get() for _ in pool]
    for p in pool:
        p.join()
    return sum(rates)


def main(counts: list[int]) -> None:
    one = trainer_rate()
    print(f"cpus {os.cpu_count()}  1 trainer: {one:,.0f} examples/s")
    for n in counts:
        t, p = threads(n), processes(n)
        print(f"{n} threads:   {t:,.0f} examples/s  ({t / one:.2f}x)")
        print(f"{n} processes: {p:,.0f} examples/s  ({p / one:.2f}x)")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2, 4])
