"""A project's prediction service: the thin I/O layer around `prediction.Scheduler`.

The scheduler decides which images go where; this sends the `predict` frames
(through each connection's queue, so nothing here waits on the network),
takes the `prediction` answers, runs fallback chunks in the master's
prediction process, and lets each HTTP request wait for its own answers. Every
method but `predict` is synchronous and called on the event loop by the
project's runtime (its only writer); `predict` is the HTTP handler's
coroutine: it waits for its answers and, at chunk deadlines, sends lost
chunks again.

Answers are spot-checked like training results (trust.py's adaptive
sampling: every one of a new connection's first answers, then a decaying
fraction down to a floor): a sampled chunk is recomputed in the master's
prediction process before it is accepted; an answer that differs by more
than `CHECK_TOLERANCE` is refused, its chunk sent elsewhere, and the worker
closed with a fatal `untrusted` error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mlitb.master.connection import Connection
from mlitb.master.predict_process import PredictProcess
from mlitb.master.prediction import FALLBACK, Chunk, ChunkPolicy, Scheduler
from mlitb.master.trust import TrustRecord, TrustSettings, should_check
from mlitb.protocol import Prediction, ProtocolError, error_frame, predict_frame
from mlitb.tasks import log_crash

log = logging.getLogger("mlitb.master.predict")

DEFAULT_TRUST = TrustSettings()
CHECK_TOLERANCE = 1e-4  # probabilities; engines agree within ~1e-6 (bench/verify_tolerance.py measures gradients)


class PredictionFailed(Exception):
    """A request could not be answered (timeout, or the fallback process failed)."""


@dataclass
class _Job:
    """What one waiting request needs to send its chunks, and how it is woken."""

    pixels: np.ndarray
    params: np.ndarray
    iteration: int
    layers: list[dict[str, Any]]
    normalization: dict[str, float]
    process: PredictProcess
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None


@dataclass(frozen=True)
class Outcome:
    """A finished request: probabilities in input order, and how its chunks went."""

    probabilities: np.ndarray
    chunks: list[dict[str, Any]]
    iteration: int


@dataclass
class PredictCounters:
    """Totals for the API and /metrics."""

    requests: int = 0
    images: int = 0
    chunks: int = 0
    reassigned: int = 0  # chunks sent again: their worker left, answered badly or missed its deadline
    refused: int = 0  # answers refused (wrong size, non-finite, not probabilities)
    ignored: int = 0  # answers for chunks no longer outstanding (late after a reassignment)
    fallback_chunks: int = 0
    checks_passed: int = 0  # answers recomputed by the master and found equal
    checks_failed: int = 0  # ... and found different: the worker was closed as untrusted


def _now_ms() -> float:
    return time.monotonic() * 1000.0


class PredictService:
    """One project's prediction work; workers join and leave through the runtime."""

    def __init__(self, policy: ChunkPolicy, trust: TrustSettings = DEFAULT_TRUST) -> None:
        self.scheduler = Scheduler(policy)
        self.trust = trust
        self._records: dict[str, TrustRecord] = {}
        self._rng = random.Random()
        self.counters = PredictCounters()
        self._conns: dict[str, Connection] = {}
        self._params_sent: dict[str, int] = {}  # worker -> iteration of the params its connection holds
        self._jobs: dict[str, _Job] = {}
        self._tasks: set[asyncio.Task] = set()

    @property
    def workers(self) -> int:
        return len(self._conns)

    # ------------------------------------------------------------ called by the runtime

    def add_worker(self, conn: Connection, images_per_s: float | None = None) -> None:
        self._conns[conn.id] = conn
        self._records[conn.id] = TrustRecord(conn.id)
        self.scheduler.add_worker(conn.id, images_per_s)
        self._pump()

    def remove_worker(self, worker_id: str) -> None:
        if self._conns.pop(worker_id, None) is None:
            return
        self._params_sent.pop(worker_id, None)
        self._records.pop(worker_id, None)
        self.counters.reassigned += len(self.scheduler.remove_worker(worker_id))
        self._pump()

    def on_prediction(self, conn: Connection, prediction: Prediction) -> None:
        """An answer: stored if it fits its chunk; a bad one sends the chunk elsewhere and is refused."""
        expected = self.scheduler.expected_count(conn.id, prediction.key)
        if expected is None:
            self.counters.ignored += 1
            return
        problem = prediction.error
        if problem is None and prediction.probabilities.shape[0] != expected:
            problem = ProtocolError("bad_size", f"'probabilities' holds {prediction.probabilities.shape[0]} rows; "
                                                f"chunk {prediction.key} has {expected} images")
        record = self._records[conn.id]
        record.received()
        if problem is not None:
            record.refuse(problem.code)
            self.scheduler.refuse(conn.id, prediction.key)
            self.counters.refused += 1
            self.counters.reassigned += 1
            self._pump()
            raise problem
        chunk = self.scheduler.chunks[prediction.key]
        job = self._jobs.get(chunk.request)
        if job is not None and should_check(record, self._rng, self.trust):
            self.scheduler.hold(conn.id, prediction.key)
            self._spawn(self._check(conn, prediction, chunk.start, chunk.stop, job))
            return
        record.accept()
        self._accepted(conn.id, prediction.key, prediction.probabilities, prediction.compute_ms)

    def close(self) -> None:
        """The project is going away: waiting requests fail now."""
        for job in self._jobs.values():
            job.error = PredictionFailed("the project was deleted or the master is stopping")
            job.wake.set()
        for task in self._tasks:
            task.cancel()

    # ------------------------------------------------------------ called by the HTTP handler

    async def predict(self, pixels: np.ndarray, params: np.ndarray, iteration: int, *, layers: list[dict[str, Any]],
                      normalization: dict[str, float], process: PredictProcess, timeout_s: float,
                      deadline_floor_ms: float) -> Outcome:
        """Probabilities of uint8 pixels (N, H, W, C) with the parameters of `iteration`, in input order."""
        self.scheduler.policy = replace(self.scheduler.policy, deadline_floor_ms=deadline_floor_ms)
        request_id = secrets.token_hex(5)
        request = self.scheduler.add_request(request_id, int(pixels.shape[0]))
        job = _Job(pixels, params, iteration, layers, normalization, process)
        self._jobs[request_id] = job
        self.counters.requests += 1
        self.counters.images += request.count
        try:
            async with asyncio.timeout(timeout_s):
                self._pump()
                while not request.complete:
                    if job.error is not None:
                        raise PredictionFailed(str(job.error)) from job.error
                    job.wake.clear()
                    deadline = self.scheduler.next_deadline()
                    wait_s = None if deadline is None else max(deadline - _now_ms(), 0.0) / 1000.0
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait_s):
                            await job.wake.wait()
                    self._expire()
            if job.error is not None:
                raise PredictionFailed(str(job.error)) from job.error
            return Outcome(request.assemble(), request.log, iteration)
        except TimeoutError:
            raise PredictionFailed(f"{request.done} of {request.count} images were predicted within "
                                   f"{timeout_s:g} s; try a smaller batch or later") from None
        finally:
            self.scheduler.drop_request(request_id)
            del self._jobs[request_id]

    # ------------------------------------------------------------ internals

    def _expire(self) -> None:
        lost = self.scheduler.expire(_now_ms())
        if lost:
            self.counters.reassigned += len(lost)
            log.info("prediction chunks %s missed their deadline; sending them again", [c.key for c in lost])
        self._pump()

    def _pump(self) -> None:
        """Hand out every chunk the scheduler can place now."""
        for chunk in self.scheduler.assign(_now_ms()):
            job = self._jobs[chunk.request]
            self.counters.chunks += 1
            if chunk.worker == FALLBACK:
                self.counters.fallback_chunks += 1
                self._spawn(self._run_fallback(chunk, job))
                continue
            pixels = job.pixels[chunk.start:chunk.stop]
            params = None if self._params_sent.get(chunk.worker) == job.iteration else job.params
            self._params_sent[chunk.worker] = job.iteration
            self._conns[chunk.worker].send(predict_frame(chunk.key, job.iteration, pixels, params))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_crash(log))

    async def _check(self, conn: Connection, prediction: Prediction, start: int, stop: int, job: _Job) -> None:
        """Recompute a sampled answer in the master's process; accept it, or refuse it and exclude its worker."""
        try:
            expected = await job.process.predict(job.layers, job.params, job.pixels[start:stop], job.normalization)
        except Exception as exc:  # the check could not run: the answer is taken on trust, as unsampled ones are
            log.error("a prediction spot check failed to run", exc_info=exc)
            expected = None
        record = self._records.get(conn.id)
        if self.scheduler.expected_count(conn.id, prediction.key) is None or record is None:
            return  # its request is gone, or the worker left (its chunk was sent elsewhere)
        difference = 0.0 if expected is None else float(np.abs(expected - prediction.probabilities).max())
        if difference <= CHECK_TOLERANCE:
            record.check_passed()
            self.counters.checks_passed += expected is not None
            self._accepted(conn.id, prediction.key, prediction.probabilities, prediction.compute_ms)
            return
        why = (f"chunk {prediction.key}: probabilities differ by up to {difference:.3g} from the master's "
               f"recomputation (tolerance {CHECK_TOLERANCE:g})")
        record.check_failed(why)
        self.counters.checks_failed += 1
        log.warning("prediction worker %s excluded: %s", conn.id, why)
        self.scheduler.refuse(conn.id, prediction.key)
        self.counters.refused += 1
        self.counters.reassigned += 1
        conn.close(error_frame("untrusted", f"{why}; this connection is excluded", fatal=True))
        self.remove_worker(conn.id)  # its other chunks go elsewhere now; leave() later finds it gone

    async def _run_fallback(self, chunk: Chunk, job: _Job) -> None:
        started = _now_ms()
        try:
            probabilities = await job.process.predict(job.layers, job.params, job.pixels[chunk.start:chunk.stop],
                                                      job.normalization)
        except Exception as exc:
            log.error("prediction in the fallback process failed", exc_info=exc)
            job.error = exc
            job.wake.set()
            return
        self._accepted(FALLBACK, chunk.key, probabilities, _now_ms() - started)

    def _accepted(self, worker_id: str, key: str, probabilities: np.ndarray, compute_ms: float) -> None:
        request = self.scheduler.accept(worker_id, key, probabilities, compute_ms, _now_ms())
        if request is not None and request.id in self._jobs:
            self._jobs[request.id].wake.set()
        self._pump()
