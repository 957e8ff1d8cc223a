"""Latency, throughput and work budgets: simulated clocks, no real time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mlitb.master import latency as L

SETTINGS = settings(max_examples=200, deadline=None)


class SimulatedWorker:
    """A worker behind a link: computes `speed` x budget (plus `overrun`), then
    its result takes `latency` ms to arrive. Drives the module as the event
    loop would: a miss at the deadline, a late result still recorded."""

    def __init__(self, iteration_ms: float, policy: L.BudgetPolicy = L.DEFAULT_POLICY) -> None:
        self.T = iteration_ms
        self.policy = policy
        self.timing = L.WorkerTiming()
        self.iteration = 0
        self.budgets: list[int] = []

    def iterate(self, latency: float, overrun: float = 0.0, examples_per_ms: float = 1.0) -> bool:
        budget = L.work_budget_ms(self.timing, self.T, self.policy)
        self.budgets.append(budget)
        sent = self.iteration * self.T
        deadline = sent + self.T
        compute = budget + overrun
        received = sent + compute + latency
        on_time = received <= deadline
        if not on_time:
            L.record_miss(self.timing, self.iteration, self.policy)
        recorded = L.record_result(
            self.timing,
            sent_ms=sent,
            received_ms=received,
            compute_ms=compute,
            count=max(int(compute * examples_per_ms), 1),
            deadline_ms=deadline,
            budget_ms=budget,
            policy=self.policy,
        )
        assert recorded == on_time
        self.iteration += 1
        return on_time


def test_unknown_worker_gets_a_cautious_first_budget():
    timing = L.WorkerTiming()
    margin = L.margin_ms(1000)
    assert margin == 0.05 * 1000 + 20
    assert L.work_budget_ms(timing, 1000) == int(1000 - 200 - margin)


def test_budget_fits_steady_latency():
    worker = SimulatedWorker(1000)
    for _ in range(5):
        worker.iterate(latency=20)
    assert worker.budgets[-1] == 1000 - 20 - L.margin_ms(1000)
    assert worker.timing.misses == 0


def test_step_in_latency_is_absorbed_within_three_results():
    T = 1000
    worker = SimulatedWorker(T)
    for _ in range(6):
        worker.iterate(latency=20)
    for _ in range(3):
        worker.iterate(latency=320)
    budget = L.work_budget_ms(worker.timing, T)
    assert budget + 320 + L.margin_ms(T) <= T
    assert worker.iterate(latency=320)
    assert not L.is_excluded(worker.timing)


@SETTINGS
@given(
    T=st.integers(1000, 30000),
    before=st.floats(0.0, 500.0),
    after_fraction=st.floats(0.0, 1.0),
)
def test_any_step_in_latency_is_absorbed_within_three_results(T, before, after_fraction):
    margin = L.margin_ms(T)
    after = after_fraction * (T - margin - L.DEFAULT_POLICY.min_budget_ms)
    worker = SimulatedWorker(T)
    for _ in range(5):
        worker.iterate(latency=before)
    for _ in range(3):
        worker.iterate(latency=after)
    budget = L.work_budget_ms(worker.timing, T)
    assert budget + after + margin <= T + 1e-6


def test_single_latency_spike_is_ignored():
    worker = SimulatedWorker(1000)
    for _ in range(5):
        worker.iterate(latency=20)
    steady = worker.budgets[-1]
    worker.iterate(latency=2000)
    assert worker.timing.misses == 1
    worker.iterate(latency=20)
    worker.iterate(latency=20)
    # the spike moved neither the median nor (through it) the smoothed estimate;
    # only the miss's shrink remains, and it recovers with on-time results.
    assert L.latency_estimate_ms(worker.timing, 1000) == 20
    for _ in range(3):
        worker.iterate(latency=20)
    assert worker.budgets[-1] == steady


def test_budget_grows_back_gradually_when_latency_drops():
    T = 2000
    worker = SimulatedWorker(T)
    for _ in range(5):
        worker.iterate(latency=600)
    for _ in range(12):
        assert worker.iterate(latency=50)
    after_drop = worker.budgets[5:]
    assert after_drop == sorted(after_drop)
    assert after_drop[-1] >= T - 50 - L.margin_ms(T) - 1


def test_overrun_of_the_budget_is_planned_for():
    T = 1000
    worker = SimulatedWorker(T)
    for _ in range(6):
        worker.iterate(latency=50, overrun=150)
    budget = L.work_budget_ms(worker.timing, T)
    assert budget + 150 + 50 + L.margin_ms(T) <= T
    assert worker.iterate(latency=50, overrun=150)


def test_throughput_tracks_a_slowdown_within_three_results():
    worker = SimulatedWorker(1000)
    for _ in range(5):
        worker.iterate(latency=20, examples_per_ms=2.0)
    # Measured by the master's clock (never the client's compute_ms): the 20 ms latency of a ~930 ms round trip.
    assert 2000 * 0.97 < L.examples_per_s(worker.timing) < 2000
    for _ in range(3):
        worker.iterate(latency=20, examples_per_ms=0.5)
    assert L.examples_per_s(worker.timing) < 2000 / 2


def test_repeated_misses_shrink_the_budget_then_exclude():
    T = 1000
    timing = L.WorkerTiming()
    budgets = [L.work_budget_ms(timing, T)]
    for iteration in range(1, 3):
        L.record_miss(timing, iteration)
        budgets.append(L.work_budget_ms(timing, T))
        assert not L.is_excluded(timing)
    assert budgets[0] > budgets[1] > budgets[2]
    L.record_miss(timing, 3)
    assert L.is_excluded(timing)
    assert timing.excluded_since == 3
    assert [L.should_probe(timing, i) for i in range(3, 10)] == [
        False, False, False, True, False, False, True,
    ]


def test_late_result_updates_estimates_but_does_not_readmit():
    timing = L.WorkerTiming()
    for iteration in range(3):
        L.record_miss(timing, iteration)
    assert L.is_excluded(timing)
    on_time = L.record_result(
        timing, sent_ms=0, received_ms=1500, compute_ms=100, count=10, deadline_ms=1000
    )
    assert not on_time
    assert L.is_excluded(timing)
    assert timing.misses == 3 and timing.consecutive_misses == 3
    assert timing.latency_ms == 1400


def test_probe_on_time_readmits_with_a_small_budget_that_grows_back():
    T = 1000
    worker = SimulatedWorker(T)
    for _ in range(3):
        worker.iterate(latency=20)
    full = L.work_budget_ms(worker.timing, T)
    for _ in range(3):
        worker.iterate(latency=5000)
    assert L.is_excluded(worker.timing)
    probe_budget = L.work_budget_ms(worker.timing, T)
    assert probe_budget == L.DEFAULT_POLICY.min_budget_ms
    # the link recovers: the probe's result arrives in time
    assert worker.iterate(latency=20)
    assert not L.is_excluded(worker.timing)
    budgets = []
    for _ in range(16):
        assert worker.iterate(latency=20)
        budgets.append(worker.budgets[-1])
    assert budgets == sorted(budgets)
    assert budgets[0] < full
    assert budgets[-1] >= full - 1


def test_far_worker_stays_excluded():
    T = 1000
    worker = SimulatedWorker(T)
    for _ in range(9):
        worker.iterate(latency=3000)
    assert L.is_excluded(worker.timing)
    assert worker.budgets[-1] == L.DEFAULT_POLICY.min_budget_ms


def test_hidden_tab_is_budgeted_as_slow():
    worker = SimulatedWorker(1000)
    for _ in range(4):
        worker.iterate(latency=20)
    visible = L.work_budget_ms(worker.timing, 1000)
    L.record_state(worker.timing, hidden=True)
    assert L.work_budget_ms(worker.timing, 1000) == int(visible * L.DEFAULT_POLICY.hidden_factor)
    L.record_state(worker.timing, hidden=False)
    assert L.work_budget_ms(worker.timing, 1000) == visible


def test_budget_never_exceeds_a_short_iteration():
    policy = L.BudgetPolicy(min_budget_ms=50)
    assert L.work_budget_ms(L.WorkerTiming(), 30, policy) == 30
    assert L.work_budget_ms(L.WorkerTiming(), 0, policy) == 0


events = st.one_of(
    st.tuples(
        st.just("result"),
        st.floats(0, 1e6),  # sent
        st.floats(-1e3, 1e5),  # round trip (a skewed clock can make it negative)
        st.floats(0, 1e5),  # compute_ms
        st.integers(0, 10_000),  # count
        st.floats(-1e5, 1e5),  # deadline relative to sent
        st.none() | st.floats(0, 1e5),  # budget sent
    ),
    st.tuples(st.just("miss"), st.integers(0, 1000)),
    st.tuples(st.just("state"), st.booleans()),
)


@SETTINGS
@given(
    history=st.lists(events, max_size=40),
    T=st.floats(0, 60_000),
    min_budget=st.floats(0, 1000),
)
def test_budget_is_always_within_min_and_T(history, T, min_budget):
    policy = L.BudgetPolicy(min_budget_ms=min_budget)
    timing = L.WorkerTiming()
    for event in history:
        if event[0] == "result":
            _, sent, rtt, compute, count, deadline, budget = event
            L.record_result(
                timing,
                sent_ms=sent,
                received_ms=sent + rtt,
                compute_ms=compute,
                count=count,
                deadline_ms=sent + deadline,
                budget_ms=budget,
                policy=policy,
            )
        elif event[0] == "miss":
            L.record_miss(timing, event[1], policy)
        else:
            L.record_state(timing, event[1])
        budget = L.work_budget_ms(timing, T, policy)
        assert isinstance(budget, int)
        assert 0 <= budget <= T
        assert budget >= int(min(min_budget, T))
        assert L.latency_estimate_ms(timing, T, policy) >= 0
        rate = L.examples_per_s(timing)
        assert rate is None or rate >= 0
        assert policy.min_factor <= timing.factor <= 1.0
        assert L.is_excluded(timing) == (timing.excluded_since is not None)


def test_a_lie_about_compute_time_buys_no_throughput():
    """Throughput comes from the master's clock: claiming 1 ms of compute changes only the liar's own budget."""
    honest, liar = L.WorkerTiming(), L.WorkerTiming()
    for timing, compute_ms in ((honest, 900.0), (liar, 1.0)):
        for i in range(5):
            L.record_result(timing, sent_ms=i * 1000, received_ms=i * 1000 + 950, compute_ms=compute_ms, count=900,
                            deadline_ms=i * 1000 + 1000, budget_ms=900)
    assert L.examples_per_s(liar) == L.examples_per_s(honest)
    assert L.work_budget_ms(liar, 1000) < L.work_budget_ms(honest, 1000)
