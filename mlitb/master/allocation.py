"""Which trainer computes on which training shard (MLitB section 3.3).

MLitB's master keeps two indexes over a project's training shards:
*allocated-to* (shard -> the one trainer computing on it, or none: "to be
allocated") and *cached-by* (shard -> the trainers holding it in their cache).
`Allocation` holds both, each shard's example count, and per trainer its cache
limit and measured throughput. The functions below are the events of the
event loop; each mutates the `Allocation` in place and adds the trainers whose
allocation it changed to `Allocation.changed`, so the loop sends `assign` only
to those (`take_changed`).

Shares are in examples, not shards: a trainer's fair share of all examples is
proportional to its throughput (examples/s), "water-filled" under the cache
limits (a trainer that cannot hold its share keeps what it can hold and the
rest is spread over the others). A trainer whose throughput is not measured
yet counts as the mean of the measured ones.

The module is pure: no I/O, no clocks; ties are broken by id so every result
is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

MIN_THROUGHPUT = 1e-6
DEFAULT_TOLERANCE = 0.15
DEFAULT_MAX_MOVES = 8


@dataclass
class TrainerShards:
    """One trainer as allocation sees it.

    `throughput` is examples/s as measured by the latency monitor, or None
    until measured. `allocated` mirrors allocated-to and `load` is its
    example count; `cached` is the trainer's last `cached` report (it may
    name shards not registered here).
    """

    cache_limit: int
    throughput: float | None = None
    allocated: set[str] = field(default_factory=set)
    cached: set[str] = field(default_factory=set)
    load: int = 0


@dataclass
class Allocation:
    """MLitB's two indexes plus what shares are computed from.

    `allocated_to[shard]` is a trainer id or None (to be allocated);
    `cached_by[shard]` is the set of trainers whose last report listed it;
    `changed` collects trainers whose allocation changed since `take_changed`;
    `rebalancing` is set while `rebalance` is moving shards toward its band.
    """

    shard_counts: dict[str, int] = field(default_factory=dict)
    allocated_to: dict[str, str | None] = field(default_factory=dict)
    cached_by: dict[str, set[str]] = field(default_factory=dict)
    trainers: dict[str, TrainerShards] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    rebalancing: bool = False


# ---------------------------------------------------------------- queries


def load_examples(alloc: Allocation, trainer_id: str) -> int:
    """Examples in the shards allocated to `trainer_id`."""
    return alloc.trainers[trainer_id].load


def assigned_shards(alloc: Allocation, trainer_id: str) -> list[str]:
    """The trainer's complete allocation, sorted: what `assign` tells it."""
    return sorted(alloc.trainers[trainer_id].allocated)


def work_shards(alloc: Allocation, trainer_id: str) -> list[str]:
    """Allocated shards the trainer already holds: what `work` tells it to use.

    MLitB computes only on cached data; shards still downloading join the
    computation once a `cached` report lists them.
    """
    trainer = alloc.trainers[trainer_id]
    return sorted(trainer.allocated & trainer.cached)


def unallocated_shards(alloc: Allocation) -> list[str]:
    """Shards waiting for a trainer (none connected, or all caches full)."""
    return sorted(s for s, t in alloc.allocated_to.items() if t is None)


def take_changed(alloc: Allocation) -> set[str]:
    """Trainers whose allocation changed since the last call; clears the set."""
    changed = {t for t in alloc.changed if t in alloc.trainers}
    alloc.changed = set()
    return changed


def effective_throughput(alloc: Allocation, trainer_id: str) -> float:
    """The trainer's throughput for sharing: measured, else the mean measured, else 1."""
    own = alloc.trainers[trainer_id].throughput
    if own is not None:
        return max(own, MIN_THROUGHPUT)
    measured = [t.throughput for t in alloc.trainers.values() if t.throughput is not None]
    if not measured:
        return 1.0
    return max(sum(measured) / len(measured), MIN_THROUGHPUT)


def target_examples(alloc: Allocation) -> dict[str, float]:
    """Each trainer's fair share of all registered examples.

    Proportional to throughput, water-filled under cache limits: a trainer
    whose share exceeds what its cache holds (limit x mean shard size) is
    fixed at that and the rest is shared among the others. If the caches
    together hold less than everything, shares sum to less than the total.
    """
    if not alloc.trainers:
        return {}
    total = float(sum(alloc.shard_counts.values()))
    mean_count = total / len(alloc.shard_counts) if alloc.shard_counts else 0.0
    weights = {t: effective_throughput(alloc, t) for t in alloc.trainers}
    capacity = {t: alloc.trainers[t].cache_limit * mean_count for t in alloc.trainers}
    targets: dict[str, float] = {}
    free = sorted(alloc.trainers)
    remaining = total
    while free:
        weight_sum = sum(weights[t] for t in free)
        shares = {t: remaining * weights[t] / weight_sum for t in free}
        capped = [t for t in free if shares[t] > capacity[t]]
        if not capped:
            targets.update(shares)
            break
        for t in capped:
            targets[t] = capacity[t]
            remaining -= capacity[t]
        free = [t for t in free if t not in capped]
    return targets


def is_balanced(
    alloc: Allocation, tolerance: float = DEFAULT_TOLERANCE, shard_slack: float = 1.0
) -> bool:
    """Whether every trainer's load is within tolerance of its fair share.

    The slack is `tolerance x share` plus `shard_slack` of the largest shard,
    because shards are indivisible. A trainer under its share with a full
    cache counts as balanced: it cannot take more.
    """
    if not alloc.trainers or not alloc.shard_counts:
        return True
    largest = max(alloc.shard_counts.values())
    targets = target_examples(alloc)
    for trainer_id, trainer in alloc.trainers.items():
        deviation = load_examples(alloc, trainer_id) - targets[trainer_id]
        slack = tolerance * targets[trainer_id] + shard_slack * largest
        if deviation > slack:
            return False
        if -deviation > slack and _room(trainer) > 0:
            return False
    return True


# ----------------------------------------------------------------- events


def add_shards(alloc: Allocation, shard_counts: Mapping[str, int]) -> None:
    """Register new training shards (id -> examples) and allocate them.

    Already registered ids are left alone. New shards go to trainers that
    cache them first, else to the least loaded; without room they wait.
    """
    for shard_id, count in shard_counts.items():
        if shard_id in alloc.shard_counts:
            continue
        if count < 0:
            raise ValueError(f"shard {shard_id} has a negative example count {count}")
        alloc.shard_counts[shard_id] = int(count)
        alloc.allocated_to[shard_id] = None
        alloc.cached_by[shard_id] = {
            t for t, trainer in alloc.trainers.items() if shard_id in trainer.cached
        }
    allocate_pending(alloc)


def allocate_pending(alloc: Allocation) -> None:
    """Give every unallocated shard a trainer with room, if there is one.

    A trainer that already caches the shard is preferred (no download), then
    the least loaded relative to throughput. Larger shards are placed first.
    """
    pending = sorted(unallocated_shards(alloc), key=lambda s: (-alloc.shard_counts[s], s))
    weights = {t: effective_throughput(alloc, t) for t in alloc.trainers}
    with_room = [t for t in sorted(alloc.trainers) if _room(alloc.trainers[t]) > 0]
    for shard_id in pending:
        if not with_room:
            break
        count = alloc.shard_counts[shard_id]
        holders = alloc.cached_by.get(shard_id, ())
        cachers = [t for t in with_room if t in holders]
        candidates = cachers or with_room
        best = min(candidates, key=lambda t: (alloc.trainers[t].load + count) / weights[t])
        _move(alloc, shard_id, best)
        if _room(alloc.trainers[best]) == 0:
            with_room.remove(best)


def add_trainer(
    alloc: Allocation,
    trainer_id: str,
    cache_limit: int,
    cached: Iterable[str] = (),
    throughput: float | None = None,
) -> None:
    """A newcomer joins: unallocated shards first, then a pie-cut (MLitB 3.3).

    It takes unallocated shards it caches, then other unallocated shards, up
    to its cache limit. If that leaves it below its fair share, it cuts
    shards from trainers above theirs, most loaded first, preferring shards
    it already caches and larger shards (fewer moves), and moves a shard only
    while that brings it closer to its share: it never receives more than
    its share plus half a shard from others. The newcomer is always reported
    as changed, so it gets its first `assign` even if empty.
    """
    if trainer_id in alloc.trainers:
        raise ValueError(f"trainer {trainer_id} already joined")
    if cache_limit < 0:
        raise ValueError(f"cache limit must be >= 0, got {cache_limit}")
    trainer = TrainerShards(cache_limit=cache_limit, throughput=throughput)
    alloc.trainers[trainer_id] = trainer
    record_cached(alloc, trainer_id, cached)
    alloc.changed.add(trainer_id)

    pending = sorted(
        unallocated_shards(alloc),
        key=lambda s: (s not in trainer.cached, -alloc.shard_counts[s], s),
    )
    for shard_id in pending[: _room(trainer)]:
        _move(alloc, shard_id, trainer_id)
    _pie_cut(alloc, trainer_id)


def remove_trainer(alloc: Allocation, trainer_id: str) -> None:
    """A trainer left: its shards go to cachers, else the least loaded, else wait.

    Shards of surviving trainers never move; only the departed one's are
    placed (by `allocate_pending`'s rule). It disappears from cached-by.
    """
    trainer = alloc.trainers.pop(trainer_id, None)
    if trainer is None:
        return
    for shard_id in trainer.allocated:
        alloc.allocated_to[shard_id] = None
    trainer.allocated = set()
    trainer.load = 0
    for shard_id in trainer.cached:
        holders = alloc.cached_by.get(shard_id)
        if holders is not None:
            holders.discard(trainer_id)
    alloc.changed.discard(trainer_id)
    allocate_pending(alloc)


def record_cached(alloc: Allocation, trainer_id: str, shard_ids: Iterable[str]) -> None:
    """A trainer's `cached` report: the full set of shards it holds now.

    Updates cached-by; the allocation itself does not change (a shard
    allocated but not cached is simply not computed on until it arrives).
    """
    trainer = alloc.trainers[trainer_id]
    new = set(shard_ids)
    for shard_id in trainer.cached - new:
        holders = alloc.cached_by.get(shard_id)
        if holders is not None:
            holders.discard(trainer_id)
    for shard_id in new:
        holders = alloc.cached_by.get(shard_id)
        if holders is not None:
            holders.add(trainer_id)
    trainer.cached = new


def set_throughput(alloc: Allocation, trainer_id: str, examples_per_s: float | None) -> None:
    """Record a trainer's measured throughput (examples/s); None forgets it."""
    if examples_per_s is not None:
        examples_per_s = max(float(examples_per_s), MIN_THROUGHPUT)
    alloc.trainers[trainer_id].throughput = examples_per_s


def rebalance(
    alloc: Allocation,
    tolerance: float = DEFAULT_TOLERANCE,
    max_moves: int = DEFAULT_MAX_MOVES,
) -> None:
    """Move shards toward throughput-proportional shares, with hysteresis.

    Measured throughput wobbles and every move costs a download, so moving
    starts only when `is_balanced(alloc, tolerance)` fails, and then goes on
    (over several calls: at most `max_moves` shards per call, i.e. per
    iteration) until the loads are within `tolerance / 2` and half a shard,
    a band that a small throughput change does not leave. Each move takes a shard from the
    trainer most above its share to the one most below it (with cache room),
    preferring a shard the receiver already caches, and only if the move
    lowers their summed deviation; so the moves end and the loads converge.
    """
    if not alloc.rebalancing:
        if is_balanced(alloc, tolerance):
            return
        alloc.rebalancing = True
    targets = target_examples(alloc)
    for _ in range(max_moves):
        if is_balanced(alloc, tolerance / 2, shard_slack=0.5):
            alloc.rebalancing = False
            break
        move = _best_rebalance_move(alloc, targets)
        if move is None:
            alloc.rebalancing = False
            break
        shard_id, receiver = move
        _move(alloc, shard_id, receiver)


# ---------------------------------------------------------------- helpers


def _room(trainer: TrainerShards) -> int:
    return max(trainer.cache_limit - len(trainer.allocated), 0)


def _move(alloc: Allocation, shard_id: str, to: str) -> None:
    owner = alloc.allocated_to[shard_id]
    if owner == to:
        return
    count = alloc.shard_counts[shard_id]
    if owner is not None:
        alloc.trainers[owner].allocated.discard(shard_id)
        alloc.trainers[owner].load -= count
        alloc.changed.add(owner)
    alloc.allocated_to[shard_id] = to
    alloc.trainers[to].allocated.add(shard_id)
    alloc.trainers[to].load += count
    alloc.changed.add(to)


def _improvement(excess: float, deficit: float, count: int) -> float:
    """How much moving `count` examples from a donor `excess` above its share
    to a receiver `deficit` below its share lowers their summed deviation."""
    return excess + deficit - abs(excess - count) - abs(deficit - count)


def _pie_cut(alloc: Allocation, newcomer: str) -> None:
    trainer = alloc.trainers[newcomer]
    targets = target_examples(alloc)
    counts = alloc.shard_counts
    offers = {
        donor: sorted(alloc.trainers[donor].allocated, key=lambda s: (s not in trainer.cached, -counts[s], s))
        for donor in sorted(alloc.trainers)
        if donor != newcomer and alloc.trainers[donor].load > targets[donor]
    }
    while _room(trainer) > 0:
        deficit = targets[newcomer] - trainer.load
        if deficit <= 0:
            break
        best: tuple | None = None
        for donor, offer in offers.items():
            load = alloc.trainers[donor].load
            excess = load - targets[donor]
            if excess <= 0:
                continue
            fill = load / max(targets[donor], MIN_THROUGHPUT)
            for shard_id in offer:
                count = counts[shard_id]
                if 0 < count < 2 * deficit and _improvement(excess, deficit, count) > 0:
                    key = (shard_id not in trainer.cached, -fill, -count, shard_id)
                    if best is None or key < best[0]:
                        best = (key, shard_id, donor)
                    break
        if best is None:
            break
        _, shard_id, donor = best
        offers[donor].remove(shard_id)
        _move(alloc, shard_id, newcomer)


def _best_rebalance_move(alloc: Allocation, targets: dict[str, float]) -> tuple[str, str] | None:
    loads = {t: trainer.load for t, trainer in alloc.trainers.items()}
    donors = sorted(
        (t for t in alloc.trainers if loads[t] > targets[t]),
        key=lambda t: (-(loads[t] - targets[t]), t),
    )
    receivers = sorted(
        (t for t in alloc.trainers if loads[t] < targets[t] and _room(alloc.trainers[t]) > 0),
        key=lambda t: (-(targets[t] - loads[t]), t),
    )
    for donor in donors:
        excess = loads[donor] - targets[donor]
        for receiver in receivers:
            deficit = targets[receiver] - loads[receiver]
            cached = alloc.trainers[receiver].cached
            ideal = min(excess, deficit)
            candidates = [
                s
                for s in alloc.trainers[donor].allocated
                if _improvement(excess, deficit, alloc.shard_counts[s]) > 0
            ]
            if candidates:
                shard_id = min(
                    candidates,
                    key=lambda s: (s not in cached, abs(alloc.shard_counts[s] - ideal), s),
                )
                return shard_id, receiver
    return None
