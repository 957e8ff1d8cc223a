"""The loop's bookkeeping without a network: result acceptance, joins, reduce, the send queue.

The `Connection`s here are real; their sender tasks never run, so their
queues show exactly what the loop handed them.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from mlitb.data.manifest import Manifest, ShardRef, Split
from mlitb.master.connection import Connection
from mlitb.master.definition import ProjectDef, parse_optimizer
from mlitb.master.loop import boundary
from mlitb.master.runtime import ProjectRuntime
from mlitb.master.settings import Settings
from mlitb.protocol import ClientInfo, Hello, Result, decode

LAYERS = [{"type": "input", "out_sx": 4, "out_sy": 4, "out_depth": 1}, {"type": "softmax", "num_classes": 3}]
HOUR_MS = 3_600_000


def make_runtime(shards: int = 6, aggregation: str = "mean") -> ProjectRuntime:
    refs = tuple(ShardRef(f"s{i}", 10, 100) for i in range(shards))
    manifest = Manifest("d", "d", ("a", "b", "c"), (4, 4, 1), Split(refs, (20, 20, 20)), Split((), (0, 0, 0)), 10, "")
    optimizer = parse_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.0}, None)
    definition = ProjectDef("p", "p", "d", LAYERS, HOUR_MS, optimizer, {"scale": 1.0, "offset": 0.0}, 10**6, 1,
                            status="running", aggregation=aggregation)
    settings = Settings(admin_token="x", data_url="http://data", max_iteration_ms=HOUR_MS, max_pending_frames=4)
    return ProjectRuntime.build(definition, manifest, settings)


def join(rt: ProjectRuntime, cache: bool = True) -> Connection:
    conn = Connection(ws=None, max_pending=100)  # type: ignore[arg-type]
    rt.join(conn, Hello("trainer", "p", ClientInfo()))
    if cache:
        rt.on_cached(conn, tuple(rt.allocation.trainers[conn.id].allocated))
    return conn


def result(iteration: int, value: float, count: int, size: int) -> Result:
    return Result(iteration, np.full(size, value, np.float32), count, 1.0, 0, 1.0)


def step(rt: ProjectRuntime) -> None:
    """One boundary, as `run_project` does it."""
    rt.wake.clear()
    boundary(rt, time.monotonic(), lambda _rt: None)


def sent_types(conn: Connection) -> list[str]:
    return [decode(frame, 1 << 30)["type"] for batch in conn._queue for frame in batch.frames]


def test_no_trainer_means_no_iteration():
    rt = make_runtime()
    step(rt)
    assert rt.window is None and rt.iteration == 0
    join(rt, cache=False)
    step(rt)
    assert rt.window is None, "a trainer holding none of its shards is not admitted"


def test_trainers_join_only_at_a_boundary():
    rt = make_runtime()
    a = join(rt)
    step(rt)
    b = join(rt)
    assert set(rt.window.waiting) == {a.id}, "b cached mid-iteration: it waits for the next boundary"
    rt.on_result(a, result(0, 1.0, 1, rt.param_count))
    step(rt)
    assert set(rt.window.waiting) == {a.id, b.id}


def test_reduce_applies_the_count_weighted_average_once():
    rt = make_runtime(aggregation="mean")
    a, b = join(rt), join(rt)
    step(rt)
    before = rt.params.copy()
    rt.on_result(a, result(0, 1.0, 1, rt.param_count))
    rt.on_result(b, result(0, 4.0, 3, rt.param_count))
    assert not rt.window.waiting and rt.wake.is_set(), "the last result due ends the iteration early"
    rt.on_result(b, result(0, 4.0, 3, rt.param_count))  # a duplicate is not applied twice
    step(rt)
    # SGD without momentum or decay: w -= lr * (1 + 4) / (1 + 3)
    np.testing.assert_allclose(rt.params, before - np.float32(0.1 * 5 / 4), rtol=1e-6)
    assert rt.iteration == 1 and rt.metrics[-1]["workers"] == 2
    assert rt.counters.dropped == {"unsolicited": 1}


def test_results_that_must_not_count():
    rt = make_runtime()
    a = join(rt)
    step(rt)
    rt.on_result(a, result(1, 1.0, 1, rt.param_count))
    assert rt.counters.dropped["unsolicited"] == 1, "no work was sent for a future iteration"
    rt.window.deadline = time.monotonic() - 0.001
    rt.on_result(a, result(0, 1.0, 1, rt.param_count))
    assert rt.counters.dropped["late"] == 1
    step(rt)
    rt.on_result(a, result(0, 1.0, 1, rt.param_count))
    assert rt.counters.dropped["old"] == 1
    assert rt.counters.accepted == 0 and rt.counters.missed == 1
    assert rt.metrics[-1]["workers"] == 0 and rt.iteration == 1


def test_a_worker_leaving_releases_the_iteration_and_its_shards():
    rt = make_runtime()
    a, b = join(rt), join(rt)
    step(rt)
    rt.on_result(a, result(0, 1.0, 1, rt.param_count))
    assert not rt.wake.is_set(), "b still owes a result"
    rt.leave(b)
    assert rt.wake.is_set() and not rt.window.waiting
    assert rt.allocation.trainers[a.id].allocated == set(rt.allocation.shard_counts)
    assert sent_types(a)[-1] == "assign"


def test_the_send_queue_keeps_control_frames_and_only_the_newest_iteration():
    rt = make_runtime()
    a = join(rt)
    assert sent_types(a) == ["welcome", "params", "assign", "idle"]
    step(rt)
    step(rt)
    assert sent_types(a) == ["welcome", "assign", "idle", "params", "work"]
    frames = [frame for batch in a._queue for frame in batch.frames]
    assert decode(frames[-1], 1 << 30)["iteration"] == 1


def test_a_client_that_stops_reading_is_closed():
    conn = Connection(ws=None, max_pending=2)  # type: ignore[arg-type]
    for _ in range(3):
        conn.send(b"x")
    assert conn.closing
    assert decode(conn._queue[-1].frames[0], 1 << 30)["code"] == "too_slow"


@pytest.mark.parametrize("iteration_ms", [100, 5000])
def test_a_patched_period_sets_the_next_deadline(iteration_ms):
    rt = make_runtime()
    join(rt)
    rt.definition = replace(rt.definition, iteration_ms=iteration_ms)
    now = time.monotonic()
    boundary(rt, now, lambda _rt: None)
    assert rt.window.deadline == pytest.approx(now + iteration_ms / 1000)


def test_the_default_rule_bounds_a_scaled_result_and_counts_are_capped_at_the_work():
    rt = make_runtime(aggregation="centered_clip")
    conns = [join(rt) for _ in range(4)]
    step(rt)
    before = rt.params.copy()
    held = rt.workers[conns[3].id].work_examples
    for conn in conns[:3]:
        rt.on_result(conn, result(0, 1.0, 5, rt.param_count))
    rt.on_result(conns[3], result(0, 1000.0 * held, held, rt.param_count))  # ×1000 and every example it holds
    step(rt)
    moved = before - rt.params
    assert 0 < moved.max() < 0.1 * 3, "one ×1000 client of four moves the step by a bounded amount"
    assert rt.counters.outliers == 1 and rt.workers[conns[3].id].trust.outliers == 1


def test_lies_about_count_and_time_are_refused():
    rt = make_runtime()
    a = join(rt)
    step(rt)
    worker = rt.workers[a.id]
    too_many = result(0, 1.0, worker.work_examples + 1, rt.param_count)
    rt.on_result(a, too_many)
    assert rt.counters.dropped["implausible_count"] == 1
    slow = Result(0, np.zeros(rt.param_count, np.float32), 1, 1.0, 0, 3_600_000.0)
    rt.on_result(a, slow)
    assert rt.counters.dropped["implausible_time"] == 1, "compute_ms beyond the master's own clock"
    assert worker.trust.refused == {"implausible_count": 1, "implausible_time": 1}
    assert worker.accepted == 0
