"""Trust records of anonymous clients, adaptive spot-check sampling, and count/timing plausibility.

BOINC's adaptive replication applied to gradients: a new client's first
results are all checked (recomputed by verifier.py), then the probability
decays with a clean record down to a floor, so an honest long-lived volunteer
costs little and a fresh identity (a reconnect under a new id) starts again at
the lowest trust. One failed check excludes: the caller closes the connection
with a fatal `untrusted` error. Everything here is pure and clock-free: the
caller passes the master's own timestamps.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrustSettings:
    check_first: int = 5  # every one of a new client's first N accepted results is checked
    check_decay: float = 0.8  # then p = max(floor, decay ** (clean checks − check_first))
    check_floor: float = 0.05  # a long clean record is still checked this often
    compute_slack_ms: float = 250.0  # compute_ms may exceed the master-measured elapsed time by this
    count_factor: float = 4.0  # a throughput above median × this of its own history is implausible


@dataclass
class TrustRecord:
    """What the master knows of one client id; a new id starts here, at the lowest trust."""

    client_id: str
    results: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    outliers: int = 0
    checks_passed: int = 0
    checks_failed: int = 0
    excluded: str | None = None  # why, once excluded
    banned: bool = False
    throughputs: deque[float] = field(default_factory=lambda: deque(maxlen=20))  # master-measured examples/s

    def received(self) -> None:
        self.results += 1

    def accept(self, throughput: float | None = None, outlier: bool = False) -> None:
        """An applied result; `throughput` is count / master-measured elapsed seconds."""
        self.accepted += 1
        self.outliers += int(outlier)
        if throughput is not None:
            self.throughputs.append(float(throughput))

    def refuse(self, reason: str) -> None:
        self.refused[reason] += 1

    def flag_outlier(self) -> None:
        """An applied result whose norm was far above the iteration's median (aggregation clipped it)."""
        self.outliers += 1

    def check_passed(self) -> None:
        self.checks_passed += 1

    def check_failed(self, why: str) -> None:
        self.checks_failed += 1
        self.exclude(f"failed a recomputation check: {why}")

    def exclude(self, reason: str) -> None:
        self.excluded = reason

    def ban(self) -> None:
        self.banned = True
        self.exclude("banned by the researcher")

    def unban(self) -> None:
        self.banned = False
        self.excluded = None

    @property
    def trusted(self) -> bool:
        return self.excluded is None and not self.banned

    def summary(self) -> dict[str, object]:
        """For the API and the dashboard's workers table."""
        return {
            "results": self.results, "accepted": self.accepted, "refused": dict(self.refused),
            "outliers": self.outliers, "checks_passed": self.checks_passed, "checks_failed": self.checks_failed,
            "excluded": self.excluded, "banned": self.banned,
        }


def check_probability(record: TrustRecord, settings: TrustSettings) -> float:
    """1 for the first `check_first` results, then decaying with clean checks to the floor."""
    if record.checks_passed < settings.check_first:
        return 1.0
    return max(settings.check_floor, settings.check_decay ** (record.checks_passed - settings.check_first + 1))


def should_check(record: TrustRecord, rng: random.Random, settings: TrustSettings = TrustSettings()) -> bool:
    return rng.random() < check_probability(record, settings)


def count_problem(count: int, held_examples: int) -> str | None:
    """A result covers at most one pass over the examples of the work's shards."""
    if count > held_examples:
        return f"count {count} exceeds the {held_examples} examples of the work's shards"
    return None


def timing_problem(compute_ms: float, elapsed_ms: float, settings: TrustSettings = TrustSettings()) -> str | None:
    """compute_ms cannot exceed the time between the master sending the work and receiving the result."""
    if compute_ms > elapsed_ms + settings.compute_slack_ms:
        return f"compute_ms {compute_ms:.0f} exceeds the {elapsed_ms:.0f} ms the master measured (+{settings.compute_slack_ms:g})"
    return None


def throughput(count: int, elapsed_ms: float) -> float:
    """Examples per second by the master's own clock (sent → received), never the client's compute_ms."""
    return count / max(elapsed_ms, 1.0) * 1000.0


def throughput_problem(record: TrustRecord, count: int, elapsed_ms: float,
                       settings: TrustSettings = TrustSettings()) -> str | None:
    """A throughput far above the client's own history (needs a few results of history first)."""
    if len(record.throughputs) < 3:
        return None
    history = sorted(record.throughputs)
    median = history[len(history) // 2]
    now = throughput(count, elapsed_ms)
    if median > 0 and now > median * settings.count_factor:
        return f"{now:.0f} examples/s is over {settings.count_factor:g}× this client's median of {median:.0f}"
    return None
