"""The per-project event loop: one synchronized map-reduce step per iteration (MLitB 3.3).

At each iteration boundary, in MLitB's order: data (allocate waiting shards),
join (admit trainers holding data), reduce (apply the robust aggregate of the
results of the iteration that just closed: aggregation.py), latency (measure, set budgets, rebalance),
broadcast (one params encode for everyone, a small work frame per trainer).
The iteration is timed by its deadline T, not by waiting for results: it
closes at the deadline or as soon as every trainer given work has answered or
left, so a dead worker costs at most one deadline and a fast group is not held
back. Without an admitted trainer the loop sleeps until one is ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from mlitb.master import allocation as alloc
from mlitb.master import latency
from mlitb.master.guard import guarded_step
from mlitb.master.runtime import ProjectRuntime, Window, Worker
from mlitb.protocol import f32_bytes, idle_frame, work_frame

AfterReduce = Callable[[ProjectRuntime], None]


async def run_project(rt: ProjectRuntime, after_reduce: AfterReduce) -> None:
    """Iterate until cancelled (pause, delete, shutdown)."""
    while True:
        rt.wake.clear()
        if boundary(rt, time.monotonic(), after_reduce) is None:
            await rt.wake.wait()
            continue
        await wait_window(rt)


async def wait_window(rt: ProjectRuntime) -> None:
    """Until the deadline, or until no trainer given work still owes a result."""
    window = rt.window
    assert window is not None
    while window.waiting:
        remaining = window.deadline - time.monotonic()
        if remaining <= 0:
            return
        rt.wake.clear()
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel (pause) that races a wake-up.
            async with asyncio.timeout(remaining):
                await rt.wake.wait()
        except TimeoutError:
            return


def boundary(rt: ProjectRuntime, now: float, after_reduce: AfterReduce) -> Window | None:
    """Close the open iteration and open the next; None when there is nobody to work (or the lease ran out)."""
    if not rt.lease_valid():  # a master frozen past its lease wakes here: it must not step nor broadcast
        return None
    closed = rt.take_window()
    data_step(rt)
    join_step(rt)
    if closed is not None:
        reduce_step(rt, closed, now)
        latency_step(rt, closed)
    rt.grow()  # new classes: the net gains outputs between two iterations (its clients reconnect)
    if closed is not None:
        after_reduce(rt)
    broadcast_step(rt, now)
    return rt.window


def data_step(rt: ProjectRuntime) -> None:
    """New shards of a grown dataset are registered; shards waiting for a trainer (new, after a
    departure, or caches full) get one (`add_shards` allocates every pending shard)."""
    alloc.add_shards(rt.allocation, rt.new_train_shards())
    rt.send_assignments()


def join_step(rt: ProjectRuntime) -> None:
    """Trainers enter only here, at a boundary, and only once they hold some of their shards."""
    for worker_id, worker in rt.workers.items():
        if not worker.admitted and rt.usable_shards(worker_id):
            worker.admit()


def reduce_step(rt: ProjectRuntime, closed: Window, now: float) -> None:
    """Apply the robust aggregate of the accepted results with the optimizer, record the iteration, move on.

    The aggregate is already a mean gradient (per-client means combined by the project's rule, its norm
    bounded by the recent history), so the optimizer takes it with a count of 1. A step that would make the
    parameters non-finite raises (guard.py) before anything is recorded; the supervisor reports it and the
    same iteration runs again from the last good parameters.
    """
    reduction = rt.reduction
    if reduction.contributors:
        aggregate, tau = reduction.finish(rt.norm_history)
        guarded_step(rt.optimizer, rt.params, aggregate.gradient, 1, closed.iteration)
        rt.record_aggregate(aggregate, tau, reduction.clients)
    rt.close_iteration(closed, now)


def latency_step(rt: ProjectRuntime, closed: Window) -> None:
    """Record deadline misses (exclusion follows), then move shares toward measured throughput."""
    for worker_id, worker in rt.workers.items():
        if worker_id in closed.waiting:
            latency.record_miss(worker.timing, closed.iteration)
            if latency.is_excluded(worker.timing) and worker.timing.excluded_since == closed.iteration:
                worker.conn.send(idle_frame("excluded"))
        alloc.set_throughput(rt.allocation, worker_id, latency.examples_per_s(worker.timing))
    alloc.rebalance(rt.allocation)
    rt.send_assignments()


def broadcast_step(rt: ProjectRuntime, now: float) -> None:
    """The same params bytes to every client, work to every admitted trainer with usable shards.

    Each work carries a fresh random seed: with the shards' order it fixes which examples a result covers
    (work_order.py), so any result can be recomputed exactly (a spot check) and its count is bounded by
    the examples of those shards.

    Exclusion keeps a slow trainer from holding the others back; when every trainer is excluded
    there is nobody to protect, and leaving them all idle would stop training, so all get work.
    """
    candidates = {wid: w for wid, w in rt.workers.items() if w.admitted and rt.usable_shards(wid)}
    workers = {wid: w for wid, w in candidates.items() if _gets_work(w, rt.iteration)} or candidates
    if not workers:
        rt.open_window(None)
        return
    params = f32_bytes(rt.params)
    frames = rt.param_frames
    frames.advance(rt.iteration, rt.params, {w.codecs.params for w in rt.workers.values()})
    frame = frames.frame_for("f32", None)
    deadline = now + rt.definition.iteration_ms / 1000
    examples = 0
    for worker_id, worker in rt.workers.items():
        if worker_id not in workers:
            worker.conn.send_iteration(frames.frame_for(worker.codecs.params, worker.params_base))
            continue
        shards = tuple(rt.usable_shards(worker_id))
        held = sum(rt.allocation.shard_counts[s] for s in shards)
        examples += held
        seed = rt.new_seed()
        worker.give_work(rt.iteration, now, deadline, latency.work_budget_ms(worker.timing, rt.definition.iteration_ms),
                         seed, shards, held)
        worker.conn.send_iteration(frames.frame_for(worker.codecs.params, worker.params_base), work_frame(rt.iteration, worker.budget_ms, list(shards), seed))
    for tracker in rt.trackers.values():
        tracker.send_iteration(frame)
    rt.open_window(Window(rt.iteration, now, deadline, set(workers)), params, examples)


def _gets_work(worker: Worker, iteration: int) -> bool:
    """Excluded workers get an occasional probe instead of every iteration's work."""
    return not latency.is_excluded(worker.timing) or latency.should_probe(worker.timing, iteration)
