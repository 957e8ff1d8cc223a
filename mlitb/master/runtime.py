"""A project while the master hosts it: parameters, workers, the open iteration, counters.

The arrival side lives here: what happens when a client joins, reports its
cache, sends a result, or leaves. Every handler is synchronous and O(P) at
most, so it runs on the event loop between the loop task's awaits and needs
no locks. The iteration steps themselves are in loop.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlitb.data.manifest import Manifest
from mlitb.master import allocation as alloc
from mlitb.master import latency
from mlitb.master.checkpoint import Checkpoint
from mlitb.master.connection import Connection
from mlitb.master.definition import ProjectDef
from mlitb.master.predict_service import PredictService
from mlitb.master.settings import Settings
from mlitb.master.trust import TrustSettings
from mlitb.model import Net
from mlitb.optim import Optimizer, hyper_of, optimizer_from_spec
from mlitb.protocol import (
    ClientInfo,
    Hello,
    Prediction,
    ProtocolError,
    Result,
    assign_frame,
    idle_frame,
    params_frame,
    welcome_frame,
)


@dataclass(frozen=True)
class ProjectError:
    """A project's last failure: what happened, when (unix s), at which iteration, how often in a row, and
    where: `loop` (an iteration failed), `dataset` (its data went away) or `evaluation` (the test figures
    could not be computed; training goes on, and the next good evaluation clears it)."""

    message: str
    time: float
    iteration: int
    failures: int
    source: str = "loop"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Worker:
    """A connected trainer and its outstanding work (`work_*` describe the last `work` sent)."""

    conn: Connection
    info: ClientInfo
    timing: latency.WorkerTiming = field(default_factory=latency.WorkerTiming)
    admitted: bool = False
    work_iteration: int | None = None
    work_sent_at: float = 0.0
    work_deadline: float = 0.0
    work_answered: bool = False
    budget_ms: int = 0
    accepted: int = 0
    dropped: int = 0

    @property
    def state(self) -> str:
        if latency.is_excluded(self.timing):
            return "excluded"
        return "training" if self.admitted else "waiting"

    def admit(self) -> None:
        """Enter the computation (at a boundary, once it holds some of its shards)."""
        self.admitted = True

    def give_work(self, iteration: int, sent_at: float, deadline: float, budget_ms: int) -> None:
        """Record the `work` about to be sent: its result is measured against these."""
        self.work_iteration = iteration
        self.work_sent_at = sent_at
        self.work_deadline = deadline
        self.work_answered = False
        self.budget_ms = budget_ms


@dataclass
class GradientSum:
    """One running sum of the results of the open iteration: O(P) memory whatever the worker count."""

    grad: np.ndarray
    count: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    contributors: int = 0

    @classmethod
    def zeros(cls, size: int) -> GradientSum:
        return cls(np.zeros(size, np.float32))

    def add(self, result: Result) -> None:
        np.add(self.grad, result.grad_sum, out=self.grad)
        self.count += result.count
        self.loss_sum += result.loss_sum
        self.correct += result.correct
        self.contributors += 1

    def reset(self) -> None:
        self.grad.fill(0)
        self.count = self.correct = self.contributors = 0
        self.loss_sum = 0.0


@dataclass
class Window:
    """The open iteration: results for `iteration` count until `deadline` (monotonic seconds)."""

    iteration: int
    started: float
    deadline: float
    waiting: set[str]


@dataclass
class Counters:
    """Totals for /metrics and the API."""

    iterations: int = 0
    examples: int = 0
    accepted: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> results not applied
    missed: int = 0  # work sent whose result did not arrive by the deadline
    last_iteration_s: float = 0.0
    examples_per_s: float = 0.0


class ProjectRuntime:
    """One hosted project, and the only writer of its state. Built with `ProjectRuntime.build`."""

    def __init__(self, definition: ProjectDef, net: Net, manifest: Manifest, params: np.ndarray,
                 optimizer: Optimizer, iteration: int, metrics: list[dict[str, Any]], settings: Settings) -> None:
        self.definition = definition
        self.net = net
        self.manifest = manifest
        self.params = params
        self.optimizer = optimizer
        self.iteration = iteration
        self.metrics = metrics
        self.settings = settings
        self.workers: dict[str, Worker] = {}
        self.trackers: dict[str, Connection] = {}
        self.predictors: dict[str, Connection] = {}  # role `predictor`: prediction work only
        self.predictions = PredictService(settings.chunk_policy(), TrustSettings(
            check_first=settings.predict_check_first, check_floor=settings.predict_check_floor))
        self.allocation = alloc.Allocation()
        alloc.add_shards(self.allocation, {ref.id: ref.count for ref in manifest.train.shards})
        self.registered_revision = manifest.revision
        # Why the master paused the project on its own (dataset deleted), or its loop's last failure
        # (supervision.py); until the next start.
        self.error: ProjectError | None = None
        self.sum = GradientSum.zeros(net.param_count)
        self.window: Window | None = None
        self.counters = Counters()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    @classmethod
    def build(cls, definition: ProjectDef, manifest: Manifest, settings: Settings,
              checkpoint: Checkpoint | None = None) -> ProjectRuntime:
        """A project from its definition, fresh (parameters from its seed) or resumed from a checkpoint."""
        net = Net(definition.layers)
        optimizer = optimizer_from_spec(definition.optimizer, net.layout)
        if checkpoint is None:
            params, iteration, metrics = net.init_params(definition.seed), 0, []
        else:
            optimizer.load_state_dict(checkpoint.optimizer_state)
            params, iteration, metrics = checkpoint.params, checkpoint.iteration, checkpoint.metrics
        if params.shape != (net.param_count,):
            raise ValueError(f"the checkpoint holds {params.size} parameters, the layers need {net.param_count}")
        return cls(definition, net, manifest, params, optimizer, iteration, metrics, settings)

    # ------------------------------------------------------------ queries

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def param_count(self) -> int:
        return self.net.param_count

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    @property
    def running(self) -> bool:
        return self.definition.status == "running"

    def usable_shards(self, worker_id: str) -> list[str]:
        return alloc.work_shards(self.allocation, worker_id)

    def new_train_shards(self) -> dict[str, int]:
        """Train shards of the current manifest the allocation does not know yet (id -> examples)."""
        if self.manifest.revision == self.registered_revision:
            return {}
        self.registered_revision = self.manifest.revision
        return {ref.id: ref.count for ref in self.manifest.train.shards if ref.id not in self.allocation.shard_counts}

    def snapshot(self) -> Checkpoint:
        """A consistent copy of the trained state (what a closure or a checkpoint holds)."""
        return Checkpoint(
            iteration=self.iteration,
            params=self.params.copy(),
            optimizer_state=self.optimizer.state_dict(),
            allocation={w: sorted(t.allocated) for w, t in self.allocation.trainers.items()},
            # The records themselves are shared: only evaluation writes into them later (filling in
            # test figures), and copying 100k dicts on the loop would stall it (bench/checkpoint_write.py).
            metrics=list(self.metrics),
        )

    # ------------------------------------------------------------ the researcher and the supervisor

    def set_definition(self, definition: ProjectDef) -> None:
        """A changed definition (status, name, T, hyper-parameters); the loop reads it at the next boundary."""
        if definition.optimizer != self.definition.optimizer:
            self.optimizer.set_hyper(hyper_of(definition.optimizer))
        self.definition = definition

    def attach_task(self, task: asyncio.Task) -> None:
        self.task = task

    def detach_task(self) -> asyncio.Task | None:
        """The loop task, now no longer this project's (the caller cancels it)."""
        task, self.task = self.task, None
        return task

    def discard_open_iteration(self) -> None:
        """Forget the open iteration's results; the parameters stay those of the last completed one."""
        self.window = None
        self.sum.reset()

    def record_error(self, error: ProjectError) -> None:
        self.error = error

    def clear_error(self, source: str | None = None) -> None:
        """Forget the error (only one from `source`, when given)."""
        if self.error is not None and (source is None or self.error.source == source):
            self.error = None

    def record_evaluation(self, iteration: int, loss: float, accuracy: float) -> None:
        """Test figures of the parameters after `iteration`, written into that iteration's record."""
        self.clear_error("evaluation")
        for record in reversed(self.metrics):
            if record["iteration"] == iteration:
                record["test_loss"], record["test_accuracy"] = loss, accuracy
                break

    def record_evaluation_failure(self, iteration: int, exc: Exception) -> bool:
        """Count a failed evaluation as the project's error, unless a graver one is shown; True if recorded."""
        if self.error is not None and self.error.source != "evaluation":
            return False
        message = f"test evaluation after iteration {iteration} failed: {exc}; training goes on without test figures"
        failures = self.error.failures + 1 if self.error else 1
        self.error = ProjectError(message, time.time(), iteration, failures, source="evaluation")
        return True

    def close_iteration(self, closed: Window, now: float) -> None:
        """Record the iteration that just closed (its optimizer step already taken) and move to the next."""
        total = self.sum
        elapsed = max(now - closed.started, 1e-9)
        c = self.counters
        c.iterations += 1
        c.examples += total.count
        c.accepted += total.contributors
        c.missed += sum(1 for w in closed.waiting if w in self.workers)
        c.last_iteration_s = elapsed
        c.examples_per_s = total.count / elapsed
        self.metrics.append({
            "iteration": closed.iteration,
            "time": time.time(),
            "train_loss": total.loss_sum / total.count if total.count else None,
            "train_accuracy": total.correct / total.count if total.count else None,
            "test_loss": None,
            "test_accuracy": None,
            "examples_per_s": c.examples_per_s,
            "workers": total.contributors,
            "iteration_ms": elapsed * 1000,
        })
        del self.metrics[:-self.settings.metrics_history]
        total.reset()
        self.iteration = closed.iteration + 1

    def open_window(self, window: Window | None) -> None:
        self.window = window

    # ------------------------------------------------------------ arrivals

    def adopt_manifest(self, manifest: Manifest) -> None:
        """A newer revision of the dataset: the next iteration's data step allocates its new shards."""
        self.manifest = manifest
        self.wake.set()

    def join(self, conn: Connection, hello: Hello) -> None:
        """Welcome a client; a trainer also gets its allocation."""
        conn.send(self._welcome(conn.id, hello.role))
        if hello.role == "predictor":  # its parameters come with its first chunk of each iteration
            self.predictors[conn.id] = conn
            self.predictions.add_worker(conn)
            return
        conn.send_iteration(params_frame(self.iteration, self.params))
        if hello.role == "tracker":
            self.trackers[conn.id] = conn
            return
        self.workers[conn.id] = Worker(conn, hello.client)
        alloc.add_trainer(self.allocation, conn.id, self.settings.cache_shards, self._train_ids(hello.cached))
        self.send_assignments()
        conn.send(idle_frame("waiting" if self.running else "paused"))
        if hello.predict:
            self.predictions.add_worker(conn)
        self.wake.set()

    def on_cached(self, conn: Connection, shards: tuple[str, ...]) -> None:
        if conn.id in self.workers:
            alloc.record_cached(self.allocation, conn.id, self._train_ids(shards))
            self.wake.set()

    def on_state(self, conn: Connection, hidden: bool) -> None:
        if conn.id in self.workers:
            latency.record_state(self.workers[conn.id].timing, hidden)

    def on_result(self, conn: Connection, result: Result) -> None:
        """Add a valid result to the running sum, or count why it is not applied.

        Any answer to the worker's last work, on time or not, feeds its
        latency estimates: a late result is exactly what they must learn from.
        """
        worker = self.workers.get(conn.id)
        if worker is None:
            raise ProtocolError("unexpected", "only trainers send results")
        now = time.monotonic()
        if result.iteration == worker.work_iteration and not worker.work_answered:
            worker.work_answered = True
            latency.record_result(
                worker.timing, sent_ms=worker.work_sent_at * 1000, received_ms=now * 1000,
                compute_ms=result.compute_ms, count=result.count,
                deadline_ms=worker.work_deadline * 1000, budget_ms=worker.budget_ms,
            )
        reason = self._reject_reason(conn.id, result, now)
        if reason is not None:
            self.counters.dropped[reason] += 1
            worker.dropped += 1
            return
        self.sum.add(result)
        worker.accepted += 1
        assert self.window is not None
        self.window.waiting.discard(conn.id)
        if not self.window.waiting:
            self.wake.set()

    def on_prediction(self, conn: Connection, prediction: Prediction) -> None:
        """An answer to a `predict` chunk (predict_service.py); a bad one raises after its chunk is resent."""
        self.predictions.on_prediction(conn, prediction)

    def leave(self, conn: Connection) -> None:
        """A client went away: its shards go to the others now, and the loop stops waiting for it."""
        self.trackers.pop(conn.id, None)
        self.predictors.pop(conn.id, None)
        self.predictions.remove_worker(conn.id)  # its prediction chunks go to other workers
        if self.workers.pop(conn.id, None) is None:
            return
        alloc.remove_trainer(self.allocation, conn.id)
        self.send_assignments()
        if self.window is not None:
            self.window.waiting.discard(conn.id)
        self.wake.set()

    # ------------------------------------------------------------ helpers

    def send_assignments(self) -> None:
        """Tell every trainer whose allocation changed its complete allocation."""
        counts = self.allocation.shard_counts
        sizes = {ref.id: ref.bytes for ref in self.manifest.train.shards}
        for worker_id in alloc.take_changed(self.allocation):
            shards = [(s, counts[s], sizes[s]) for s in alloc.assigned_shards(self.allocation, worker_id)]
            self.workers[worker_id].conn.send(assign_frame(shards))

    def broadcast_idle(self, reason: str) -> None:
        frame = idle_frame(reason)
        for worker in self.workers.values():
            worker.conn.send(frame)

    def _reject_reason(self, worker_id: str, result: Result, now: float) -> str | None:
        window = self.window
        if window is None or result.iteration < window.iteration:
            return "old"
        if result.iteration > window.iteration or worker_id not in window.waiting:
            return "unsolicited"
        if now > window.deadline:
            return "late"
        return None

    def _train_ids(self, shards: tuple[str, ...]) -> set[str]:
        return {s for s in shards if s in self.allocation.shard_counts}

    def _welcome(self, client_id: str, role: str) -> bytes:
        d, m = self.definition, self.manifest
        return welcome_frame(
            client_id, role,
            project={
                "id": d.id, "name": d.name, "layers": d.layers, "param_count": self.param_count,
                "num_classes": self.net.num_classes, "input_shape": list(self.net.input_shape),
                "normalization": d.normalization, "iteration_ms": d.iteration_ms, "status": d.status,
            },
            dataset={
                "id": m.id, "url": self.settings.data_url, "classes": list(m.classes), "shape": list(m.shape),
                "test": [{"id": r.id, "count": r.count, "bytes": r.bytes} for r in m.test.shards],
            },
            limits={"max_frame_bytes": self.settings.max_frame_bytes, "cache_shards": self.settings.cache_shards},
        )
