"""The split/reassemble rules of mlitb/master/prediction.py, directly (no I/O, explicit times)."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.master.prediction import FALLBACK, ChunkPolicy, Scheduler


def answer(chunk, classes: int = 3) -> np.ndarray:
    """Rows that say which image they belong to: row i is one-hot-ish at (start + i) % classes."""
    rows = np.full((chunk.count, classes), 0.1, np.float32)
    rows[np.arange(chunk.count), (np.arange(chunk.start, chunk.stop)) % classes] = 0.8
    return rows


def test_chunks_are_sized_to_each_workers_speed_and_capped_by_slots():
    s = Scheduler(ChunkPolicy(target_ms=100, initial_chunk=10, min_chunk=4, max_chunk=1000, slots=3))
    s.add_worker("fast", images_per_s=2000)  # 200 images in 100 ms
    s.add_worker("slow", images_per_s=100)  # 10
    s.add_request("r", 1000)
    sent = s.assign(now=0)
    by_worker = {w: [c.count for c in sent if c.worker == w] for w in ("fast", "slow")}
    assert by_worker == {"fast": [200, 200], "slow": [10, 10]}
    assert s.assign(now=1) == []  # the last slot of each is kept for another request


def test_answers_in_any_order_are_reassembled_in_input_order():
    s = Scheduler(ChunkPolicy(initial_chunk=7, slots=3))
    s.add_worker("a")
    s.add_worker("b")
    request = s.add_request("r", 50)
    rng = np.random.default_rng(1)
    while not request.complete:
        sent = s.assign(now=0) or list(s.chunks.values())
        chunks = list(s.chunks.values())
        rng.shuffle(chunks)
        for chunk in chunks[: max(1, len(chunks) // 2)]:
            assert s.accept(chunk.worker, chunk.key, answer(chunk), compute_ms=5, now=1) is request
        assert sent is not None
    rows = request.assemble()
    assert rows.shape == (50, 3)
    assert (rows.argmax(axis=1) == np.arange(50) % 3).all()
    assert sum(entry["count"] for entry in request.log) == 50


def test_a_departed_workers_chunks_go_to_another_worker():
    s = Scheduler(ChunkPolicy(initial_chunk=10, slots=1))
    s.add_worker("a")
    s.add_worker("b")
    request = s.add_request("r", 20)
    first = {c.worker: c for c in s.assign(now=0)}
    lost = s.remove_worker("a")
    assert [(c.start, c.stop) for c in lost] == [(first["a"].start, first["a"].stop)]
    s.accept("b", first["b"].key, answer(first["b"]), 5, now=1)
    again = s.assign(now=2)
    assert [(c.worker, c.start, c.try_number) for c in again] == [("b", first["a"].start, 2)]
    assert s.accept("a", first["a"].key, answer(first["a"]), 5, now=3) is None  # the gone worker's late answer
    s.accept("b", again[0].key, answer(again[0]), 5, now=4)
    assert request.complete and (request.assemble().argmax(axis=1) == np.arange(20) % 3).all()


def test_a_missed_deadline_or_a_refused_answer_resends_and_max_tries_falls_back():
    s = Scheduler(ChunkPolicy(initial_chunk=10, slots=1, deadline_floor_ms=1000, max_tries=2))
    s.add_worker("a")
    s.add_request("r", 10)
    (chunk,) = s.assign(now=0)
    assert s.expire(now=999) == [] and s.expire(now=1000) == [chunk]
    (second,) = s.assign(now=1000)
    assert second.worker == "a" and second.try_number == 2 and second.key != chunk.key
    assert s.refuse("a", second.key) is second
    (third,) = s.assign(now=1001)
    assert third.worker == FALLBACK  # tried twice on workers: the master's process computes it
    assert s.assign(now=1002) == []  # one fallback chunk at a time


def test_a_held_chunk_has_no_deadline_until_accepted_or_refused():
    s = Scheduler(ChunkPolicy(initial_chunk=10, slots=1, deadline_floor_ms=100))
    s.add_worker("a")
    request = s.add_request("r", 10)
    (chunk,) = s.assign(now=0)
    assert s.hold("a", chunk.key) and not s.hold("b", chunk.key)
    assert s.expire(now=10**9) == [] and s.next_deadline() is None
    s.accept("a", chunk.key, answer(chunk), 5, now=1)
    assert request.complete


def test_without_workers_everything_goes_to_the_fallback_one_chunk_at_a_time():
    s = Scheduler(ChunkPolicy(fallback_chunk=100))
    request = s.add_request("r", 250)
    (chunk,) = s.assign(now=0)
    assert (chunk.worker, chunk.count) == (FALLBACK, 100)
    s.accept(FALLBACK, chunk.key, answer(chunk), 5, now=1)
    s.add_worker("late-joiner")
    rest = s.assign(now=2)
    assert {c.worker for c in rest} == {"late-joiner"}  # once a worker is there, it takes the rest
    assert request.in_flight == len(rest)


def test_a_small_request_overtakes_a_big_batch_in_flight():
    s = Scheduler(ChunkPolicy(initial_chunk=100, slots=3))
    s.add_worker("a")
    big = s.add_request("big", 10_000)
    assert len(s.assign(now=0)) == 2  # the batch fills all but the kept slot
    small = s.add_request("small", 8)
    (sent,) = s.assign(now=1)  # sent at once, without waiting for an answer
    assert (sent.request, sent.count, sent.worker) == ("small", 8, "a")
    assert big.in_flight == 2 and small.in_flight == 1
    done = next(c for c in s.chunks.values() if c.request == "big")
    s.accept("a", done.key, answer(done), 5, now=2)
    assert s.assign(now=2) == []  # the small request holds the kept slot
    s.accept("a", sent.key, answer(sent), 5, now=3)
    (refill,) = s.assign(now=3)
    assert refill.request == "big"


def test_with_one_slot_nothing_is_kept():
    s = Scheduler(ChunkPolicy(initial_chunk=10, slots=1))
    s.add_worker("a")
    s.add_request("r", 100)
    (first,) = s.assign(now=0)
    s.accept("a", first.key, answer(first), 5, now=1)
    assert len(s.assign(now=1)) == 1


def test_whole_mode_sends_each_request_whole_round_robin():
    s = Scheduler(ChunkPolicy(split=False))
    s.add_worker("a")
    s.add_worker("b")
    s.add_request("one", 1000)
    s.add_request("two", 8)
    s.add_request("three", 8)
    assert [(c.worker, c.count) for c in s.assign(now=0)] == [("a", 1000), ("b", 8), ("a", 8)]


def test_dropping_a_request_frees_its_slots():
    s = Scheduler(ChunkPolicy(initial_chunk=5, slots=1))
    s.add_worker("a")
    s.add_request("r", 10)
    (chunk,) = s.assign(now=0)
    s.drop_request("r")
    assert s.workers["a"].in_flight == set() and s.workers["a"].queued_images == 0
    assert s.accept("a", chunk.key, answer(chunk), 5, now=1) is None
    with pytest.raises(ValueError):
        s.add_request("empty", 0)
