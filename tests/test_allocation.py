"""Allocation of shards to trainers: concrete scenarios and hypothesis invariants."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mlitb.master import allocation as A

SETTINGS = settings(max_examples=200, stateful_step_count=30, deadline=None)


def shards(n: int, count: int = 100, prefix: str = "s") -> dict[str, int]:
    return {f"{prefix}{i:03d}": count for i in range(n)}


def loads(alloc: A.Allocation) -> dict[str, int]:
    return {t: A.load_examples(alloc, t) for t in alloc.trainers}


def owners(alloc: A.Allocation) -> dict[str, str | None]:
    return dict(alloc.allocated_to)


# ------------------------------------------------------------- scenarios


def test_first_trainer_takes_everything_it_can_hold():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(10))
    assert A.unallocated_shards(alloc) == sorted(shards(10))
    A.add_trainer(alloc, "a", cache_limit=6)
    assert A.take_changed(alloc) == {"a"}
    assert len(A.assigned_shards(alloc, "a")) == 6
    assert len(A.unallocated_shards(alloc)) == 4


def test_shards_wait_without_trainers_and_go_to_the_next_one():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(4))
    A.add_trainer(alloc, "a", cache_limit=10)
    A.remove_trainer(alloc, "a")
    assert A.unallocated_shards(alloc) == sorted(shards(4))
    A.add_trainer(alloc, "b", cache_limit=10)
    assert A.assigned_shards(alloc, "b") == sorted(shards(4))


def test_newcomer_takes_unallocated_before_cutting():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(10))
    A.add_trainer(alloc, "a", cache_limit=6)
    before = A.assigned_shards(alloc, "a")
    A.take_changed(alloc)
    A.add_trainer(alloc, "b", cache_limit=4)
    assert A.take_changed(alloc) == {"b"}
    assert A.assigned_shards(alloc, "a") == before
    assert A.unallocated_shards(alloc) == []


def test_newcomer_prefers_shards_it_caches():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(10))
    A.add_trainer(alloc, "a", cache_limit=10)
    cached = ["s002", "s007", "s009"]
    A.add_trainer(alloc, "b", cache_limit=10, cached=cached)
    got = A.assigned_shards(alloc, "b")
    assert len(got) == 5
    assert set(cached) <= set(got)
    assert A.work_shards(alloc, "b") == cached


def test_pie_cut_takes_from_the_most_loaded():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(12))
    A.add_trainer(alloc, "a", cache_limit=12)
    A.add_trainer(alloc, "b", cache_limit=3)
    assert loads(alloc) == {"a": 900, "b": 300}
    b_before = A.assigned_shards(alloc, "b")
    A.add_trainer(alloc, "c", cache_limit=12)
    # b is at its (cache-capped) share; a and c split the other 900 examples.
    assert A.assigned_shards(alloc, "b") == b_before
    assert loads(alloc) == {"a": 500, "b": 300, "c": 400}


def test_pie_cut_moves_nothing_when_a_shard_would_overshoot():
    alloc = A.Allocation()
    A.add_shards(alloc, {"big": 1000})
    A.add_trainer(alloc, "a", cache_limit=5)
    A.add_trainer(alloc, "b", cache_limit=5)
    assert A.assigned_shards(alloc, "a") == ["big"]
    assert A.assigned_shards(alloc, "b") == []


def test_lost_trainers_shards_go_to_a_cacher_first():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(6))
    A.add_trainer(alloc, "a", cache_limit=10)
    A.add_trainer(alloc, "b", cache_limit=10)
    A.add_trainer(alloc, "c", cache_limit=10)
    lost = A.assigned_shards(alloc, "a")
    assert lost
    # c has everything cached, b nothing: even if c is as loaded as b, c takes a's shards.
    A.record_cached(alloc, "c", list(shards(6)))
    before_b = A.assigned_shards(alloc, "b")
    A.take_changed(alloc)
    A.remove_trainer(alloc, "a")
    assert set(lost) <= set(A.assigned_shards(alloc, "c"))
    assert A.assigned_shards(alloc, "b") == before_b
    assert A.take_changed(alloc) == {"c"}
    assert all("a" not in holders for holders in alloc.cached_by.values())


def test_lost_trainers_shards_go_to_the_least_loaded_without_cachers():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(9))
    A.add_trainer(alloc, "a", cache_limit=10)
    A.add_trainer(alloc, "b", cache_limit=10)
    A.add_trainer(alloc, "c", cache_limit=10)
    A.set_throughput(alloc, "b", 10.0)
    A.set_throughput(alloc, "c", 1000.0)
    lost = A.assigned_shards(alloc, "a")
    A.remove_trainer(alloc, "a")
    assert set(lost) <= set(A.assigned_shards(alloc, "c"))


def test_cache_limit_is_respected_and_the_rest_waits():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(10))
    A.add_trainer(alloc, "a", cache_limit=3)
    A.add_trainer(alloc, "b", cache_limit=3)
    assert len(A.unallocated_shards(alloc)) == 4
    A.remove_trainer(alloc, "a")
    assert len(A.assigned_shards(alloc, "b")) == 3
    assert len(A.unallocated_shards(alloc)) == 7


def test_work_shards_are_the_allocated_ones_already_cached():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(4))
    A.add_trainer(alloc, "a", cache_limit=4)
    assert A.work_shards(alloc, "a") == []
    A.record_cached(alloc, "a", ["s001", "s003", "other-dataset"])
    assert A.work_shards(alloc, "a") == ["s001", "s003"]
    assert alloc.cached_by["s001"] == {"a"}


def test_new_shards_go_to_trainers_caching_them():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(4))
    A.add_trainer(alloc, "a", cache_limit=10)
    A.add_trainer(alloc, "b", cache_limit=10, cached=["x000"])
    A.take_changed(alloc)
    A.add_shards(alloc, {"x000": 100})
    assert alloc.allocated_to["x000"] == "b"
    assert A.take_changed(alloc) == {"b"}


def test_take_changed_reports_each_change_once():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(4))
    A.add_trainer(alloc, "a", cache_limit=10)
    assert A.take_changed(alloc) == {"a"}
    assert A.take_changed(alloc) == set()
    A.add_trainer(alloc, "b", cache_limit=10)
    assert A.take_changed(alloc) == {"a", "b"}


def test_unmeasured_trainer_counts_as_the_mean_throughput():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(12))
    A.add_trainer(alloc, "a", cache_limit=12, throughput=100.0)
    A.add_trainer(alloc, "b", cache_limit=12, throughput=300.0)
    A.add_trainer(alloc, "new", cache_limit=12)
    assert A.effective_throughput(alloc, "new") == 200.0
    assert A.target_examples(alloc) == {"a": 200.0, "b": 600.0, "new": 400.0}


def test_rebalance_moves_toward_throughput_and_then_stops():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(20))
    A.add_trainer(alloc, "fast", cache_limit=20)
    A.add_trainer(alloc, "slow", cache_limit=20)
    A.set_throughput(alloc, "fast", 400.0)
    A.set_throughput(alloc, "slow", 100.0)
    moved_per_call = []
    for _ in range(10):
        before = owners(alloc)
        A.rebalance(alloc, tolerance=0.1, max_moves=2)
        moved_per_call.append(sum(before[s] != alloc.allocated_to[s] for s in before))
    assert max(moved_per_call) <= 2
    assert moved_per_call[-1] == 0
    assert loads(alloc) == {"fast": 1600, "slow": 400}


def test_rebalance_prefers_shards_the_receiver_caches():
    alloc = A.Allocation()
    A.add_shards(alloc, shards(10))
    A.add_trainer(alloc, "a", cache_limit=10)
    A.add_trainer(alloc, "b", cache_limit=10)
    a_shards = A.assigned_shards(alloc, "a")
    A.record_cached(alloc, "b", [a_shards[-1]])
    A.set_throughput(alloc, "a", 100.0)
    A.set_throughput(alloc, "b", 300.0)
    A.rebalance(alloc, max_moves=1)
    assert alloc.allocated_to[a_shards[-1]] == "b"


# ------------------------------------------------------ convergence (hypothesis)


@SETTINGS
@given(
    throughputs=st.lists(st.floats(1.0, 1000.0), min_size=1, max_size=6),
    n_shards=st.integers(1, 60),
    count=st.integers(1, 500),
    tolerance=st.sampled_from([0.05, 0.1, 0.15, 0.3]),
    max_moves=st.integers(1, 8),
)
def test_rebalance_converges_to_throughput_shares(throughputs, n_shards, count, tolerance, max_moves):
    alloc = A.Allocation()
    A.add_shards(alloc, shards(n_shards, count))
    for i, tp in enumerate(throughputs):
        A.add_trainer(alloc, f"t{i}", cache_limit=n_shards)
        A.set_throughput(alloc, f"t{i}", tp)
    total = n_shards * count
    calls = 0
    while True:
        before = owners(alloc)
        A.rebalance(alloc, tolerance=tolerance, max_moves=max_moves)
        moved = sum(before[s] != alloc.allocated_to[s] for s in before)
        assert moved <= max_moves
        calls += 1
        if moved == 0:
            break
        assert calls <= n_shards * len(throughputs) + 2
    assert A.is_balanced(alloc, tolerance)
    weight = sum(throughputs)
    for i, tp in enumerate(throughputs):
        share = total * tp / weight
        assert abs(A.load_examples(alloc, f"t{i}") - share) <= tolerance * share + count + 1e-6


@SETTINGS
@given(
    throughputs=st.lists(st.floats(1.0, 1000.0), min_size=2, max_size=6),
    n_shards=st.integers(1, 60),
    wobble=st.lists(st.floats(-1.0, 1.0), min_size=6, max_size=6),
)
def test_rebalance_does_not_thrash_on_small_throughput_changes(throughputs, n_shards, wobble):
    tolerance = 0.15
    alloc = A.Allocation()
    A.add_shards(alloc, shards(n_shards))
    for i, tp in enumerate(throughputs):
        A.add_trainer(alloc, f"t{i}", cache_limit=n_shards)
        A.set_throughput(alloc, f"t{i}", tp)
    # settle tightly (tolerance 0: within half a shard, or no improving move left)
    for _ in range(n_shards * len(throughputs) + 2):
        A.rebalance(alloc, tolerance=0.0)
    assert not alloc.rebalancing
    # throughput estimates wobble by a fraction of the tolerance: nothing moves
    epsilon = tolerance / 6
    for i, tp in enumerate(throughputs):
        A.set_throughput(alloc, f"t{i}", tp * (1 + epsilon * wobble[i]))
    A.take_changed(alloc)
    A.rebalance(alloc, tolerance=tolerance)
    assert A.take_changed(alloc) == set()


# ---------------------------------------------------- stateful (hypothesis)


class AllocationMachine(RuleBasedStateMachine):
    """Random joins, leaves, cache reports, new shards, throughput changes."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = A.Allocation()
        self.next_trainer = 0
        self.next_shard = 0
        self.departed: set[str] = set()
        self.snapshot: dict[str, set[str]] = {}

    def known_shards(self) -> list[str]:
        return sorted(self.alloc.shard_counts)

    @rule(counts=st.lists(st.integers(1, 300), min_size=1, max_size=6))
    def new_shards(self, counts):
        before = owners(self.alloc)
        new = {}
        for c in counts:
            new[f"s{self.next_shard:04d}"] = c
            self.next_shard += 1
        A.add_shards(self.alloc, new)
        for s, owner in before.items():
            if owner is not None:
                assert self.alloc.allocated_to[s] == owner

    @rule(
        cache_limit=st.integers(0, 12),
        throughput=st.none() | st.floats(0.5, 2000.0),
        data=st.data(),
    )
    def join(self, cache_limit, throughput, data):
        known = self.known_shards()
        cached = data.draw(st.lists(st.sampled_from(known), unique=True) if known else st.just([]))
        trainer_id = f"t{self.next_trainer}"
        self.next_trainer += 1
        before = owners(self.alloc)
        A.add_trainer(self.alloc, trainer_id, cache_limit, cached=cached, throughput=throughput)
        assert trainer_id in self.alloc.changed
        moved = 0
        for s, owner in before.items():
            now = self.alloc.allocated_to[s]
            if owner is not None and now != owner:
                assert now == trainer_id, "a join moves shards only to the newcomer"
                moved += self.alloc.shard_counts[s]
        if moved:
            largest = max(self.alloc.shard_counts.values())
            share = A.target_examples(self.alloc)[trainer_id]
            assert moved <= share + largest

    @precondition(lambda self: self.alloc.trainers)
    @rule(data=st.data())
    def leave(self, data):
        trainer_id = data.draw(st.sampled_from(sorted(self.alloc.trainers)))
        before = owners(self.alloc)
        lost = set(self.alloc.trainers[trainer_id].allocated)
        cached_by_before = {s: set(h) for s, h in self.alloc.cached_by.items()}
        A.remove_trainer(self.alloc, trainer_id)
        self.departed.add(trainer_id)
        for s, owner in before.items():
            if owner is not None and owner != trainer_id:
                assert self.alloc.allocated_to[s] == owner, "a leave moves only the departed's shards"
        for s in lost:
            cachers = cached_by_before[s] - {trainer_id}
            with_room = {t for t in cachers if A._room(self.alloc.trainers[t]) > 0}
            if with_room:
                assert self.alloc.allocated_to[s] in cachers, "a cacher with room takes a lost shard"

    @precondition(lambda self: self.alloc.trainers)
    @rule(data=st.data())
    def cache_report(self, data):
        trainer_id = data.draw(st.sampled_from(sorted(self.alloc.trainers)))
        known = self.known_shards() + ["foreign-shard"]
        held = data.draw(st.lists(st.sampled_from(known), unique=True))
        before = owners(self.alloc)
        A.record_cached(self.alloc, trainer_id, held)
        assert owners(self.alloc) == before

    @precondition(lambda self: self.alloc.trainers)
    @rule(data=st.data(), throughput=st.none() | st.floats(0.0, 2000.0))
    def throughput_changes(self, data, throughput):
        trainer_id = data.draw(st.sampled_from(sorted(self.alloc.trainers)))
        A.set_throughput(self.alloc, trainer_id, throughput)

    @rule(max_moves=st.integers(1, 8), tolerance=st.sampled_from([0.05, 0.15, 0.3]))
    def rebalance(self, max_moves, tolerance):
        before = owners(self.alloc)
        A.rebalance(self.alloc, tolerance=tolerance, max_moves=max_moves)
        moved = [s for s, owner in before.items() if self.alloc.allocated_to[s] != owner]
        assert len(moved) <= max_moves
        assert all(before[s] is not None for s in moved), "rebalance moves, allocation is not its job"

    @rule()
    def take_changed(self):
        changed = A.take_changed(self.alloc)
        now = {t: set(tr.allocated) for t, tr in self.alloc.trainers.items()}
        for t, shards_now in now.items():
            if self.snapshot.get(t) != shards_now:
                assert t in changed, f"{t}'s allocation changed but it is not reported"
        assert changed <= set(now)
        self.snapshot = now

    @invariant()
    def indexes_agree(self):
        alloc = self.alloc
        assert set(alloc.allocated_to) == set(alloc.shard_counts) == set(alloc.cached_by)
        for s, owner in alloc.allocated_to.items():
            if owner is not None:
                assert s in alloc.trainers[owner].allocated
        for t, trainer in alloc.trainers.items():
            for s in trainer.allocated:
                assert alloc.allocated_to[s] == t
            assert trainer.load == sum(alloc.shard_counts[s] for s in trainer.allocated)
            for s in trainer.cached:
                if s in alloc.cached_by:
                    assert t in alloc.cached_by[s]
        for s, holders in alloc.cached_by.items():
            for t in holders:
                assert s in alloc.trainers[t].cached

    @invariant()
    def no_shard_on_a_departed_trainer(self):
        assert not set(self.alloc.allocated_to.values()) & self.departed
        for holders in self.alloc.cached_by.values():
            assert not holders & self.departed

    @invariant()
    def cache_limits_hold(self):
        for trainer in self.alloc.trainers.values():
            assert len(trainer.allocated) <= trainer.cache_limit

    @invariant()
    def every_shard_allocated_when_capacity_allows(self):
        alloc = self.alloc
        waiting = A.unallocated_shards(alloc)
        if waiting:
            assert all(len(t.allocated) >= t.cache_limit for t in alloc.trainers.values())
        capacity = sum(t.cache_limit for t in alloc.trainers.values())
        if alloc.trainers and capacity >= len(alloc.shard_counts):
            assert waiting == []


AllocationMachine.TestCase.settings = SETTINGS
TestAllocationMachine = AllocationMachine.TestCase
