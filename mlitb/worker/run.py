"""`mlitb worker`: N trainer connections, one status line, a clean exit on Ctrl-C or SIGTERM.

`--threads N` starts N trainer *processes* (multiprocessing, spawn), not
threads: the numpy engine spends much of a small batch in Python and in
element-wise kernels that hold the GIL, so threads of one process do not add
up to N cores. Measured with bench/worker_scaling.py on a 16-core machine
(MNIST demo convnet): 8 threads 2.2× one trainer, 8 processes 7.7×. Each process is limited to its share of the BLAS threads so N
of them do not oversubscribe the machine. Children send their progress to the
parent through a queue and the parent draws the one status line.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import queue
import signal
import sys
from pathlib import Path

from mlitb.model.memory import retain_freed_memory
from mlitb.worker.client import FatalError, Trainer, TrainerOptions
from mlitb.worker.shard_cache import DEFAULT_DIR
from mlitb.worker.status import Progress, StatusLine

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
EXIT_FATAL = 2


def options_from_args(args: argparse.Namespace, slot: int = 0) -> TrainerOptions:
    return TrainerOptions(
        master_url=args.master,
        project=args.project,
        cache_dir=Path(getattr(args, "cache_dir", None) or DEFAULT_DIR),
        slot=slot,
        name=getattr(args, "name", None) or "",
        batch_size=getattr(args, "batch_size", 32),
        extra_latency_ms=getattr(args, "extra_latency_ms", 0.0),
        slowdown=getattr(args, "slowdown", 1.0),
        predict=not getattr(args, "no_predict", False),
        predict_only=getattr(args, "predict_only", False),
        **_codecs(args),
    )


def _codecs(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    """`--result-codecs a,b` / `--param-codecs ...`: offer only these (float32 is always implied)."""
    chosen = {}
    for name in ("result_codecs", "param_codecs"):
        value = getattr(args, name, None)
        if value:
            chosen[name] = tuple(dict.fromkeys(["f32", *value.split(",")]))
    return chosen


def run(args: argparse.Namespace) -> int:
    threads = max(1, int(args.threads))
    if threads == 1:
        status = StatusLine()
        try:
            return run_trainer(options_from_args(args), status.update, status.message)
        finally:
            status.close()
    return _run_processes([options_from_args(args, slot) for slot in range(threads)])


def run_trainer(options: TrainerOptions, report, say) -> int:
    """One trainer in this process until SIGINT/SIGTERM; the exit code."""
    retain_freed_memory()  # this process trains: the engine's per-batch buffers are reused, not faulted in

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await Trainer(options, report, say).run(stop)
        except FatalError as exc:
            say(f"trainer {options.slot}: refused by the master: {exc}")
            return EXIT_FATAL
        return 0

    return asyncio.run(main())


def _child(options: TrainerOptions, events: multiprocessing.Queue) -> None:
    sys.exit(run_trainer(options, events.put, events.put))


def _run_processes(all_options: list[TrainerOptions]) -> int:
    share = str(max(1, (os.cpu_count() or 1) // len(all_options)))
    for name in BLAS_THREAD_VARS:
        os.environ.setdefault(name, share)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    children = [context.Process(target=_child, args=(o, events), name=f"trainer-{o.slot}") for o in all_options]
    status = StatusLine()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.pid is not None and child.exitcode is None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for child in children:
        child.start()
    try:
        while any(child.is_alive() for child in children):
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                continue
            _show(status, event)
    finally:
        for child in children:
            child.join()
        while not events.empty():
            _show(status, events.get())
        status.close()
    codes = [child.exitcode for child in children]
    if EXIT_FATAL in codes:
        return EXIT_FATAL
    return 0 if stopping or all(c == 0 for c in codes) else 1


def _show(status: StatusLine, event: Progress | str) -> None:
    if isinstance(event, Progress):
        status.update(event)
    else:
        status.message(event)
