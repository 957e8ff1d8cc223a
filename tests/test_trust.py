"""Trust records, adaptive spot-check sampling and plausibility checks."""

from __future__ import annotations

import random

from mlitb.master.trust import (
    TrustRecord,
    TrustSettings,
    check_probability,
    count_problem,
    should_check,
    throughput,
    throughput_problem,
    timing_problem,
)


def test_new_clients_are_always_checked_then_less_down_to_the_floor():
    settings = TrustSettings(check_first=3, check_decay=0.5, check_floor=0.1)
    record = TrustRecord("a")
    rng = random.Random(1)
    for _ in range(3):
        assert check_probability(record, settings) == 1.0 and should_check(record, rng, settings)
        record.check_passed()
    assert check_probability(record, settings) == 0.5
    for _ in range(20):
        record.check_passed()
    assert check_probability(record, settings) == 0.1
    hits = sum(should_check(record, rng, settings) for _ in range(2000))
    assert 120 < hits < 280  # ~10 %


def test_a_failed_check_excludes_and_a_new_id_starts_untrusted():
    record = TrustRecord("a")
    for _ in range(30):
        record.check_passed()
    record.check_failed("grad differs")
    assert not record.trusted and "grad differs" in record.excluded
    fresh = TrustRecord("a-again")
    assert check_probability(fresh, TrustSettings()) == 1.0


def test_ban_and_unban():
    record = TrustRecord("b")
    record.ban()
    assert not record.trusted and record.summary()["banned"]
    record.unban()
    assert record.trusted


def test_records_count_results_refusals_and_outliers():
    record = TrustRecord("c")
    record.received(); record.accept(throughput=100.0, outlier=True); record.refuse("count"); record.refuse("count")
    summary = record.summary()
    assert (summary["results"], summary["accepted"], summary["outliers"], summary["refused"]) == (1, 1, 1, {"count": 2})


def test_counts_beyond_the_work_are_refused():
    assert count_problem(64, 64) is None
    assert "exceeds the 64 examples" in count_problem(1_000_000, 64)


def test_compute_time_cannot_exceed_the_masters_clock():
    assert timing_problem(900, 1000) is None
    assert "exceeds the 1000 ms" in timing_problem(5000, 1000)


def test_throughput_comes_from_the_masters_clock_and_is_checked_against_history():
    assert throughput(100, 500) == 200.0
    record = TrustRecord("d")
    assert throughput_problem(record, 10**6, 500) is None  # no history yet: the count check bounds it
    for _ in range(5):
        record.accept(throughput=throughput(100, 500))
    assert throughput_problem(record, 300, 500) is None
    assert "over 4" in throughput_problem(record, 1000, 500)
