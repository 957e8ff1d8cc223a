"""Split prediction batches into keyed chunks over the workers, and put the answers back in order.

The recipe of an inference cluster: never send a whole batch to one node (it
becomes a hot spot and every request behind it waits). A request is cut
lazily, chunk by chunk, when a worker has a free slot, so each chunk is sized
to the worker that takes it (`target_ms` of its measured speed); each worker
holds at most `slots` chunks, so a small request that arrives while a big
batch is in flight gets the next free slot instead of queueing behind the
whole batch (the request with the fewest chunks in flight goes first). Every
send has its own key; answers are reassembled by the chunk's start index,
whatever order they come back in. A chunk whose worker leaves, answers badly
or misses its deadline goes back to its request and is sent again, to
another worker where there is one; after `max_tries` it runs in the master's
fallback process, which also takes every chunk while no worker is connected.

Pure: no I/O and no clock (the caller passes `now`, in ms), so every rule is
tested directly (tests/test_prediction.py).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

FALLBACK = "master"
"""The worker name of chunks computed in the master's fallback process."""


@dataclass(frozen=True)
class ChunkPolicy:
    """How chunks are sized, bounded and timed."""

    target_ms: float = 50.0  # compute time one chunk should take on the worker that gets it
    initial_chunk: int = 64  # images, for a worker whose speed is not known yet
    min_chunk: int = 8
    max_chunk: int = 2048
    slots: int = 3  # chunks in flight per worker; the last one is kept for requests with none in flight
    deadline_floor_ms: float = 5000.0  # a chunk is given at least this long (a trainer answers between results)
    deadline_factor: float = 4.0  # ... or this many times its expected time, whichever is longer
    max_tries: int = 3  # sends to workers before a chunk runs in the fallback process
    fallback_chunk: int = 1024
    split: bool = True  # False: each request whole to one worker, round-robin (the hot-spot baseline)


@dataclass
class Chunk:
    """One send of images [start, stop) of a request to a worker (FALLBACK: the master's process)."""

    key: str
    request: str
    start: int
    stop: int
    worker: str
    sent_at: float
    deadline: float
    try_number: int

    @property
    def count(self) -> int:
        return self.stop - self.start


@dataclass
class Request:
    """A batch being predicted: what is left to send, what came back (by start index), and how."""

    id: str
    count: int
    next_start: int = 0
    retry: deque[tuple[int, int, int]] = field(default_factory=deque)  # (start, stop, tries so far)
    answers: dict[int, np.ndarray] = field(default_factory=dict)
    done: int = 0
    in_flight: int = 0
    log: list[dict[str, object]] = field(default_factory=list)  # {key, count, worker, ms} per answered chunk
    sends: int = 0

    @property
    def complete(self) -> bool:
        return self.done == self.count

    @property
    def has_pending(self) -> bool:
        return bool(self.retry) or self.next_start < self.count

    def assemble(self) -> np.ndarray:
        """The answers in input order: (count, classes)."""
        if not self.complete:
            raise ValueError(f"request {self.id} has {self.done} of {self.count} answers")
        return np.concatenate([self.answers[start] for start in sorted(self.answers)])


@dataclass
class WorkerSlot:
    """A connected worker that takes prediction work: its speed and its chunks in flight."""

    id: str
    images_per_ms: float | None = None
    in_flight: set[str] = field(default_factory=set)
    queued_images: int = 0


class Scheduler:
    """All prediction work of one project: requests, workers, chunks in flight."""

    def __init__(self, policy: ChunkPolicy = ChunkPolicy()) -> None:
        self.policy = policy
        self.requests: dict[str, Request] = {}
        self.workers: dict[str, WorkerSlot] = {}
        self.chunks: dict[str, Chunk] = {}
        self._round_robin = 0

    # ------------------------------------------------------------ membership

    def add_worker(self, worker_id: str, images_per_s: float | None = None) -> None:
        """A worker that takes predictions; `images_per_s` a first guess (e.g. its training speed)."""
        rate = images_per_s / 1000.0 if images_per_s else None
        self.workers.setdefault(worker_id, WorkerSlot(worker_id, rate))

    def remove_worker(self, worker_id: str) -> list[Chunk]:
        """The worker left: its chunks go back to their requests (returned, for the record)."""
        slot = self.workers.pop(worker_id, None)
        if slot is None:
            return []
        return [self._requeue(key) for key in list(slot.in_flight) if key in self.chunks]

    def add_request(self, request_id: str, count: int) -> Request:
        if count < 1:
            raise ValueError("a prediction request needs at least one image")
        if request_id in self.requests:
            raise ValueError(f"request {request_id} exists")
        request = Request(request_id, count)
        self.requests[request_id] = request
        return request

    def drop_request(self, request_id: str) -> None:
        """Forget a request (done, or its caller gave up); its chunks in flight become unknown keys."""
        self.requests.pop(request_id, None)
        for key in [k for k, c in self.chunks.items() if c.request == request_id]:
            chunk = self.chunks.pop(key)
            slot = self.workers.get(chunk.worker)
            if slot is not None:
                slot.in_flight.discard(key)
                slot.queued_images -= chunk.count

    # ------------------------------------------------------------ sending

    def assign(self, now: float) -> list[Chunk]:
        """Cut and hand out chunks to every free slot; chunks for FALLBACK when no worker can take them."""
        sent: list[Chunk] = []
        if not self.policy.split:
            return self._assign_whole(now)
        while True:
            fallback_busy = any(c.worker == FALLBACK for c in self.chunks.values())
            request, slot = self._pick(fallback_busy)
            if request is None:
                break
            if slot is None:
                sent.append(self._send(request, FALLBACK, self.policy.fallback_chunk, now))
            else:
                sent.append(self._send(request, slot.id, self.chunk_size(slot), now))
        return sent

    def chunk_size(self, slot: WorkerSlot) -> int:
        """Images that take `target_ms` on this worker (its measured speed), within the policy's bounds."""
        p = self.policy
        if slot.images_per_ms is None:
            return p.initial_chunk
        return int(min(max(slot.images_per_ms * p.target_ms, p.min_chunk), p.max_chunk))

    # ------------------------------------------------------------ answers

    def accept(self, worker_id: str, key: str, probabilities: np.ndarray, compute_ms: float, now: float) -> Request | None:
        """A valid answer (shape (count, classes) checked by `expected_count`): stored by start index.

        Returns the chunk's request, or None for a key that is no longer outstanding (late after a
        reassignment, or its request is gone): such answers are ignored.
        """
        chunk = self.chunks.get(key)
        if chunk is None or chunk.worker != worker_id:
            return None
        self._release(chunk)
        request = self.requests[chunk.request]
        request.in_flight -= 1
        request.answers[chunk.start] = probabilities
        request.done += chunk.count
        request.log.append({"key": key, "count": chunk.count, "worker": worker_id, "ms": round(now - chunk.sent_at, 3)})
        slot = self.workers.get(worker_id)
        if slot is not None and compute_ms > 0:
            rate = chunk.count / max(compute_ms, 1.0)
            slot.images_per_ms = rate if slot.images_per_ms is None else 0.5 * rate + 0.5 * slot.images_per_ms
        return request

    def expected_count(self, worker_id: str, key: str) -> int | None:
        """Images of the outstanding chunk `key` sent to `worker_id`, or None if there is none."""
        chunk = self.chunks.get(key)
        return chunk.count if chunk is not None and chunk.worker == worker_id else None

    def refuse(self, worker_id: str, key: str) -> Chunk | None:
        """A bad answer (wrong size, non-finite): the chunk goes back to be sent elsewhere."""
        chunk = self.chunks.get(key)
        if chunk is None or chunk.worker != worker_id:
            return None
        return self._requeue(key)

    def hold(self, worker_id: str, key: str) -> bool:
        """An answer is being spot-checked: its chunk stays outstanding, without a deadline, until accepted
        or refused. False if `key` is not outstanding for `worker_id`."""
        chunk = self.chunks.get(key)
        if chunk is None or chunk.worker != worker_id:
            return False
        chunk.deadline = math.inf
        return True

    def expire(self, now: float) -> list[Chunk]:
        """Chunks past their deadline go back to their requests."""
        return [self._requeue(key) for key, c in list(self.chunks.items()) if c.deadline <= now]

    def next_deadline(self) -> float | None:
        deadlines = [c.deadline for c in self.chunks.values() if math.isfinite(c.deadline)]
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------ internals

    def _pick(self, fallback_busy: bool) -> tuple[Request | None, WorkerSlot | None]:
        """The pending request with the fewest chunks in flight (ties: the oldest) that can go somewhere now,
        and its worker (None: the fallback process, which takes one chunk at a time)."""
        pending = sorted((r for r in self.requests.values() if r.has_pending), key=lambda r: r.in_flight)
        for request in pending:
            if self._needs_fallback(request):
                if not fallback_busy:
                    return request, None
                continue
            slot = self._free_worker(request)
            if slot is not None:
                return request, slot
        return None, None

    def _free_worker(self, request: Request) -> WorkerSlot | None:
        """The worker with room for `request` and the least queued work (ties: the fastest).

        Each worker's last slot is kept for a request with nothing in flight: a small request that arrives
        while a big batch fills the workers is sent at once, and waits at most for the chunk being computed
        (workers take their smallest queued chunk first).
        """
        keep = 1 if request.in_flight and self.policy.slots > 1 else 0
        free = [s for s in self.workers.values() if len(s.in_flight) < self.policy.slots - keep]
        if not free:
            return None
        return min(free, key=lambda s: (s.queued_images / (s.images_per_ms or 1e-3), -(s.images_per_ms or 0.0)))

    def _needs_fallback(self, request: Request) -> bool:
        return not self.workers or (bool(request.retry) and request.retry[0][2] >= self.policy.max_tries)

    def _send(self, request: Request, worker_id: str, size: int, now: float) -> Chunk:
        if request.retry:
            start, stop, tries = request.retry.popleft()
        else:
            start, stop, tries = request.next_start, min(request.next_start + size, request.count), 0
            request.next_start = stop
        request.sends += 1
        request.in_flight += 1
        key = f"{request.id}.{start}.{tries}"
        chunk = Chunk(key, request.id, start, stop, worker_id, now, math.inf, tries + 1)
        slot = self.workers.get(worker_id)
        if slot is not None:
            slot.queued_images += chunk.count
            chunk.deadline = now + self._allowed_ms(slot)
            slot.in_flight.add(key)
        self.chunks[key] = chunk
        return chunk

    def _allowed_ms(self, slot: WorkerSlot) -> float:
        """Time before a chunk counts as lost: the floor, or `deadline_factor` × the worker's queue time."""
        if slot.images_per_ms is None:
            return self.policy.deadline_floor_ms
        return max(self.policy.deadline_floor_ms, self.policy.deadline_factor * slot.queued_images / slot.images_per_ms)

    def _release(self, chunk: Chunk) -> None:
        del self.chunks[chunk.key]
        slot = self.workers.get(chunk.worker)
        if slot is not None:
            slot.in_flight.discard(chunk.key)
            slot.queued_images -= chunk.count

    def _requeue(self, key: str) -> Chunk:
        chunk = self.chunks[key]
        self._release(chunk)
        request = self.requests[chunk.request]
        request.in_flight -= 1
        request.retry.append((chunk.start, chunk.stop, chunk.try_number))
        return chunk

    def _assign_whole(self, now: float) -> list[Chunk]:
        """The baseline: each request goes whole to the next worker in turn, however busy it is."""
        sent: list[Chunk] = []
        for request in self.requests.values():
            while request.has_pending:
                if not self.workers or self._needs_fallback(request):
                    if any(c.worker == FALLBACK for c in self.chunks.values()):
                        return sent
                    sent.append(self._send(request, FALLBACK, request.count, now))
                    continue
                ids = sorted(self.workers)
                worker_id = ids[self._round_robin % len(ids)]
                self._round_robin += 1
                sent.append(self._send(request, worker_id, request.count, now))
        return sent
