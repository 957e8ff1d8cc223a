"""Per-trainer latency, throughput and work budget (MLitB section 3.3, step 4).

MLitB's master gives every trainer a time budget instead of a batch size, so
that all results of an iteration arrive by its deadline T. For that it
separates the two things that make a result late: the *latency* (sending the
work and getting the result back: network, queueing, decoding) and the
*compute* time the worker reports. For each result the caller passes the time
it sent the work and the time the result arrived (ms, any clock: this module
never reads one), the worker's `compute_ms` and example count.

Estimates (per worker, in `WorkerTiming`):

* latency sample = round trip - compute_ms (never below 0). The estimate is
  the larger of the median of the last `window` samples and an EWMA of those
  medians. The median ignores a single spike; a real step (20 ms -> 320 ms)
  is the median after two results, so the budget fits again after at most
  two results; the EWMA makes a drop in latency lower the estimate gradually
  (a budget that grows slowly is safe, one that grows too fast is late).
* overrun sample = compute_ms - the budget sent (never below 0): workers stop
  *starting* batches when the budget runs out, so a slow device with large
  batches overshoots; smoothed like latency.
* throughput = examples / round trip, both measured by the master (never the
  client's `compute_ms`, which it could lie about), median-filtered then
  EWMA-smoothed; `examples_per_s` feeds allocation's shares. A far client's
  throughput reads a little low (its latency is in the round trip).

Budget for the next iteration (`work_budget_ms`)::

    margin = margin_fraction * T + margin_ms       (default 5% of T + 20 ms)
    budget = (T - latency - overrun - margin) * factor [* hidden_factor]
    clamped to [min(min_budget_ms, T), T], whole ms rounded down

Misses and exclusion. At each deadline the caller calls `record_miss` for
every worker that was sent work and has not delivered an on-time result
(a result that arrives later is still passed to `record_result`, which then
updates the estimates but counts no second miss). Each miss halves `factor`
(`miss_shrink`); each on-time result doubles it back toward 1 (`recover`),
so a client that keeps missing gets less and less work. After
`exclude_after` consecutive misses the worker is *excluded*: the caller
stops sending it work (`idle {reason: excluded}`) but keeps the connection.
Every `probe_every` iterations after its exclusion `should_probe` says to
send it one ordinary `work` with its (by then small) budget; the first
result that arrives on time readmits it, with the small factor that then
grows back as results keep arriving on time.

A hidden browser tab (`state {hidden: true}`) is throttled by the browser, so
it is treated as slow: its budget is multiplied by `hidden_factor` until it
reports visible again.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BudgetPolicy:
    """The constants of latency monitoring; the defaults suit T of 1-30 s."""

    window: int = 3
    alpha: float = 0.5
    margin_fraction: float = 0.05
    margin_ms: float = 20.0
    min_budget_ms: float = 50.0
    initial_latency_fraction: float = 0.2
    miss_shrink: float = 0.5
    recover: float = 2.0
    min_factor: float = 1.0 / 64
    exclude_after: int = 3
    probe_every: int = 3
    hidden_factor: float = 0.5


DEFAULT_POLICY = BudgetPolicy()


@dataclass
class WorkerTiming:
    """What the master knows about one trainer's timing.

    `latency_ms`, `overrun_ms` and `examples_per_ms` are the smoothed
    estimates (None until the first result); the `recent_*` lists hold the
    last raw samples. `factor` scales the budget down after misses.
    `excluded_since` is the iteration at which the worker was excluded.
    """

    latency_ms: float | None = None
    overrun_ms: float | None = None
    examples_per_ms: float | None = None
    recent_latency_ms: list[float] = field(default_factory=list)
    recent_overrun_ms: list[float] = field(default_factory=list)
    recent_examples_per_ms: list[float] = field(default_factory=list)
    factor: float = 1.0
    consecutive_misses: int = 0
    excluded_since: int | None = None
    hidden: bool = False
    misses: int = 0


def margin_ms(iteration_ms: float, policy: BudgetPolicy = DEFAULT_POLICY) -> float:
    """Safety time kept free before the deadline: a fraction of T plus a few ms."""
    return policy.margin_fraction * iteration_ms + policy.margin_ms


def latency_estimate_ms(
    timing: WorkerTiming, iteration_ms: float, policy: BudgetPolicy = DEFAULT_POLICY
) -> float:
    """The latency the next budget plans for; a guess (a fraction of T) before any result."""
    if timing.latency_ms is None:
        return policy.initial_latency_fraction * iteration_ms
    return max(timing.latency_ms, statistics.median(timing.recent_latency_ms))


def examples_per_s(timing: WorkerTiming) -> float | None:
    """Smoothed compute throughput in examples per second, None until measured."""
    if timing.examples_per_ms is None:
        return None
    return timing.examples_per_ms * 1000.0


def is_excluded(timing: WorkerTiming) -> bool:
    """Whether the worker is dropped from the computation (but stays connected)."""
    return timing.excluded_since is not None


def should_probe(timing: WorkerTiming, iteration: int, policy: BudgetPolicy = DEFAULT_POLICY) -> bool:
    """Whether an excluded worker gets one probe `work` in this iteration."""
    if timing.excluded_since is None:
        return False
    since = iteration - timing.excluded_since
    return since > 0 and since % policy.probe_every == 0


def work_budget_ms(timing: WorkerTiming, iteration_ms: float, policy: BudgetPolicy = DEFAULT_POLICY) -> int:
    """Compute time for the worker's next `work`, so its result beats the deadline.

    `T - latency - overrun - margin`, scaled down after misses and for a
    hidden tab, clamped to [min(min_budget_ms, T), T], in whole ms.
    """
    overrun = _estimate(timing.overrun_ms, timing.recent_overrun_ms, 0.0)
    raw = iteration_ms - latency_estimate_ms(timing, iteration_ms, policy) - overrun
    raw -= margin_ms(iteration_ms, policy)
    raw *= timing.factor
    if timing.hidden:
        raw *= policy.hidden_factor
    floor = min(policy.min_budget_ms, iteration_ms)
    budget = min(max(raw, floor), iteration_ms)
    return max(int(math.floor(budget)), 0)


def record_result(
    timing: WorkerTiming,
    *,
    sent_ms: float,
    received_ms: float,
    compute_ms: float,
    count: int,
    deadline_ms: float,
    budget_ms: float | None = None,
    policy: BudgetPolicy = DEFAULT_POLICY,
) -> bool:
    """Fold one result into the estimates; returns whether it was on time.

    `sent_ms`/`received_ms`: when the work left and the result arrived;
    `deadline_ms`: the end of the iteration it answers; `budget_ms`: the
    budget that work carried (for the overrun estimate). An on-time result
    clears the miss streak, grows `factor` back and readmits an excluded
    worker; a late one only updates the estimates (its miss was already
    counted by `record_miss` at the deadline).
    """
    round_trip = max(float(received_ms) - float(sent_ms), 0.0)
    compute_ms = min(max(float(compute_ms), 0.0), round_trip)
    latency = round_trip - compute_ms
    timing.latency_ms = _push(timing.recent_latency_ms, timing.latency_ms, latency, policy)
    if budget_ms is not None:
        overrun = max(compute_ms - float(budget_ms), 0.0)
        timing.overrun_ms = _push(timing.recent_overrun_ms, timing.overrun_ms, overrun, policy)
    if count > 0:
        rate = count / max(round_trip, 1.0)
        timing.examples_per_ms = _push(timing.recent_examples_per_ms, timing.examples_per_ms, rate, policy)
    on_time = received_ms <= deadline_ms
    if on_time:
        timing.consecutive_misses = 0
        timing.factor = min(1.0, timing.factor * policy.recover)
        timing.excluded_since = None
    return on_time


def record_miss(timing: WorkerTiming, iteration: int, policy: BudgetPolicy = DEFAULT_POLICY) -> None:
    """The worker had work in `iteration` and no result by its deadline.

    Shrinks the budget factor; the `exclude_after`-th miss in a row excludes
    the worker from `iteration` on.
    """
    timing.misses += 1
    timing.consecutive_misses += 1
    timing.factor = max(timing.factor * policy.miss_shrink, policy.min_factor)
    if timing.excluded_since is None and timing.consecutive_misses >= policy.exclude_after:
        timing.excluded_since = iteration


def record_state(timing: WorkerTiming, hidden: bool) -> None:
    """A browser's `state` message: a hidden tab is throttled, so budget it as slow."""
    timing.hidden = bool(hidden)


def _estimate(smoothed: float | None, recent: list[float], default: float) -> float:
    if smoothed is None:
        return default
    return max(smoothed, statistics.median(recent))


def _push(recent: list[float], smoothed: float | None, sample: float, policy: BudgetPolicy) -> float:
    recent.append(sample)
    del recent[: -policy.window]
    filtered = statistics.median(recent)
    if smoothed is None:
        return filtered
    return policy.alpha * filtered + (1.0 - policy.alpha) * smoothed
