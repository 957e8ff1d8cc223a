"""A project while the master hosts it: parameters, workers, the open iteration, counters.

The arrival side lives here: what happens when a client joins, reports its
cache, sends a result, or leaves. Every handler is synchronous and O(P) at
most, so it runs on the event loop between the loop task's awaits and needs
no locks. The iteration steps themselves are in loop.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlitb.data.manifest import Manifest
from mlitb.links import WelcomeCodecs, negotiate
from mlitb.master import allocation as alloc
from mlitb.master import latency, trust
from mlitb.master.aggregation import (
    Aggregate,
    AggregationSettings,
    NormHistory,
    Reduction,
)
from mlitb.master.checkpoint import Checkpoint
from mlitb.master.connection import Connection
from mlitb.master.definition import ProjectDef
from mlitb.master.param_frames import ParamFrames
from mlitb.master.settings import Settings
from mlitb.model import Net
from mlitb.optim import Optimizer, hyper_of, optimizer_from_spec
from mlitb.protocol import (
    ClientInfo,
    Hello,
    ProtocolError,
    Result,
    assign_frame,
    error_frame,
    idle_frame,
    params_frame,
    welcome_frame,
)


@dataclass(frozen=True)
class ProjectError:
    """A project's last failure: what happened, when (unix s), at which iteration, how often in a row, and
    where: `loop` (an iteration failed), `dataset` (its data went away), `evaluation` (the test figures
    could not be computed; training goes on, and the next good evaluation clears it) or `trust` (every
    result was refused for many iterations in a row: the project is not learning)."""

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
    trust: trust.TrustRecord
    timing: latency.WorkerTiming = field(default_factory=latency.WorkerTiming)
    admitted: bool = False
    work_iteration: int | None = None
    work_sent_at: float = 0.0
    work_deadline: float = 0.0
    work_answered: bool = False
    work_seed: int = 0
    work_shards: tuple[str, ...] = ()
    work_examples: int = 0  # examples of the work's shards: the most a result may cover
    budget_ms: int = 0
    accepted: int = 0
    dropped: int = 0
    codecs: WelcomeCodecs = field(default_factory=WelcomeCodecs)  # negotiated at join (links.py)
    params_base: int | None = None  # the iteration whose parameters it holds, as far as the master knows

    @property
    def state(self) -> str:
        if latency.is_excluded(self.timing):
            return "excluded"
        return "training" if self.admitted else "waiting"

    def admit(self) -> None:
        """Enter the computation (at a boundary, once it holds some of its shards)."""
        self.admitted = True

    def give_work(self, iteration: int, sent_at: float, deadline: float, budget_ms: int, seed: int,
                  shards: tuple[str, ...], examples: int) -> None:
        """Record the `work` about to be sent: its result is measured, bounded and recomputed against these."""
        self.work_iteration = iteration
        self.work_sent_at = sent_at
        self.work_deadline = deadline
        self.work_answered = False
        self.budget_ms = budget_ms
        self.work_seed = seed
        self.work_shards = shards
        self.work_examples = examples


@dataclass(frozen=True)
class CheckRequest:
    """A result to recompute off the loop (registry → verifier): the work as sent, and what came back."""

    worker_id: str
    iteration: int
    layers: list[dict[str, Any]]
    normalization: dict[str, float]
    params: bytes  # the float32 parameters of `iteration`
    shards: tuple[str, ...]  # in the work's order
    seed: int
    result: Result


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
    outliers: int = 0  # applied results whose norm was far above the iteration's median (clipped)
    checks: Counter = field(default_factory=Counter)  # passed / failed: spot-check recomputations
    refused_streak: int = 0  # iterations in a row whose results were all refused
    refused_seen: int = 0  # dropped results counted by the last closed iteration
    missed: int = 0  # work sent whose result did not arrive by the deadline
    last_iteration_s: float = 0.0
    examples_per_s: float = 0.0


def aggregation_settings(rule: str) -> AggregationSettings:
    """A project's aggregation: `mean` is the plain count-weighted mean (capped at allocations only)."""
    return AggregationSettings(rule=rule, max_share=1.0) if rule == "mean" else AggregationSettings(rule=rule)


log = logging.getLogger("mlitb.master")


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
        self.allocation = alloc.Allocation()
        alloc.add_shards(self.allocation, {ref.id: ref.count for ref in manifest.train.shards})
        self.registered_revision = manifest.revision
        # Why the master paused the project on its own (dataset deleted), or its loop's last failure
        # (supervision.py); until the next start.
        self.error: ProjectError | None = None
        self.window: Window | None = None
        self.counters = Counters()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        # Trust (docs/security.md): robust aggregation's state, spot checks, bans.
        self.aggregation = aggregation_settings(definition.aggregation)
        self.norm_history = NormHistory(self.aggregation.norm_window)
        self.centre: np.ndarray | None = None  # the last aggregate: centered clipping's centre
        self.clip_tau: float | None = None  # its radius, from the last iteration's distances
        self.reduction = self._reduction(0)
        self.iteration_params = b""  # the parameters the open iteration's work is computed with
        self.trust_settings = trust.TrustSettings()
        self.banned: set[str] = set()
        self.request_check: Callable[[CheckRequest], None] | None = None  # set by the registry
        # Codecs (docs/protocol.md, "Codecs"): each parameter codec's frames, encoded once per iteration.
        self.param_frames = ParamFrames(full_every=definition.link_settings.full_every)
        self._rng = random.Random(secrets.randbits(64))

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
        """A changed definition (status, name, T, hyper-parameters, aggregation); read at the next boundary."""
        if definition.optimizer != self.definition.optimizer:
            self.optimizer.set_hyper(hyper_of(definition.optimizer))
        if definition.aggregation != self.definition.aggregation:
            self.aggregation = aggregation_settings(definition.aggregation)
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
        self.reduction = self._reduction(0)

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

    def record_aggregate(self, aggregate: Aggregate, tau: float | None, clients: list[str]) -> None:
        """The aggregate just applied: the next iteration's clipping centre and radius; outliers counted."""
        self.centre = aggregate.gradient.copy()
        self.clip_tau = tau
        for client_id, seen in zip(clients, aggregate.clients):
            if seen.outlier:
                self.counters.outliers += 1
                if client_id in self.workers:
                    self.workers[client_id].trust.flag_outlier()

    def close_iteration(self, closed: Window, now: float) -> None:
        """Record the iteration that just closed (its optimizer step already taken) and move to the next."""
        total = self.reduction
        self._watch_refusals(closed)
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
        self.reduction = self._reduction(0)
        self.iteration = closed.iteration + 1

    def new_seed(self) -> int:
        """A fresh uint32 for a work's example order and dropout masks."""
        return self._rng.getrandbits(32)

    def take_window(self) -> Window | None:
        """Close the open iteration (its accepted results stay in `reduction` for the reduce step)."""
        window, self.window = self.window, None
        return window

    def open_window(self, window: Window | None, params: bytes = b"", examples: int = 0) -> None:
        """The next iteration: its work is computed on `params`; `examples` are those of every work sent."""
        self.window = window
        self.iteration_params = params
        self.reduction = self._reduction(examples)

    def record_check(self, worker_id: str, passed: bool, reasons: tuple[str, ...]) -> None:
        """A spot check's verdict; a failed one excludes the client for good (a fatal `untrusted` error)."""
        self.counters.checks["passed" if passed else "failed"] += 1
        worker = self.workers.get(worker_id)
        if worker is None:
            return  # gone already; a new connection starts at the lowest trust
        if passed:
            worker.trust.check_passed()
            return
        why = "; ".join(reasons)
        worker.trust.check_failed(why)
        log.warning("project %s: client %s excluded: a recomputed result did not match (%s)", self.id, worker_id, why)
        worker.conn.close(error_frame("untrusted", f"one of your results was recomputed by the master and did not "
                                      f"match ({why}); this client is excluded from the project", fatal=True))

    def record_check_dropped(self) -> None:
        """The verifier was saturated: the sampled result goes unchecked (counted, shown in the API)."""
        self.counters.checks["dropped"] += 1

    def ban(self, worker_id: str) -> bool:
        """The researcher bans a client: closed with `untrusted`, and its id stays refused; False if not here."""
        self.banned.add(worker_id)
        worker = self.workers.get(worker_id)
        if worker is None:
            return False
        worker.trust.ban()
        worker.conn.close(error_frame("untrusted", "the researcher banned this client from the project", fatal=True))
        return True

    def unban(self, worker_id: str) -> None:
        self.banned.discard(worker_id)

    # ------------------------------------------------------------ arrivals

    def adopt_manifest(self, manifest: Manifest) -> None:
        """A newer revision of the dataset: the next iteration's data step allocates its new shards."""
        self.manifest = manifest
        self.wake.set()

    def join(self, conn: Connection, hello: Hello) -> None:
        """Welcome a client; a trainer also gets its codecs and allocation (and starts at the lowest trust)."""
        chosen = negotiate(self.definition.link_settings, hello.codecs) if hello.role == "trainer" else None
        conn.send(self._welcome(conn.id, hello.role, chosen))
        conn.send_iteration(params_frame(self.iteration, self.params))
        if hello.role == "tracker":
            self.trackers[conn.id] = conn
            return
        self.workers[conn.id] = Worker(conn, hello.client, trust.TrustRecord(conn.id), codecs=chosen or WelcomeCodecs())
        alloc.add_trainer(self.allocation, conn.id, self.settings.cache_shards, self._train_ids(hello.cached))
        self.send_assignments()
        conn.send(idle_frame("waiting" if self.running else "paused"))
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
        if result.codec != worker.codecs.result:
            raise ProtocolError("bad_field", f"'codec' is {result.codec!r}; this connection's results use "
                                             f"{worker.codecs.result!r} (welcome.codecs.result)")
        now = time.monotonic()
        elapsed_ms = (now - worker.work_sent_at) * 1000
        worker.trust.received()
        if result.iteration == worker.work_iteration and not worker.work_answered:
            worker.work_answered = True
            worker.params_base = result.iteration  # it computed on that iteration's parameters
            latency.record_result(
                worker.timing, sent_ms=worker.work_sent_at * 1000, received_ms=now * 1000,
                compute_ms=result.compute_ms, count=min(result.count, worker.work_examples),
                deadline_ms=worker.work_deadline * 1000, budget_ms=worker.budget_ms,
            )
        reason = self._reject_reason(conn.id, result, now) or self._trust_problem(worker, result, elapsed_ms)
        if reason is not None:
            self.counters.dropped[reason] += 1
            worker.dropped += 1
            worker.trust.refuse(reason)
            return
        self.reduction.add(conn.id, result.grad_sum, result.count, worker.work_examples, result.loss_sum,
                           result.correct)
        worker.accepted += 1
        worker.trust.accept(trust.throughput(result.count, elapsed_ms))
        if (self.request_check is not None and _checkable(result)
                and trust.should_check(worker.trust, self._rng, self.trust_settings)):
            params = (self.iteration_params if worker.codecs.params == "f32"
                      else self.param_frames.held(worker.codecs.params))
            self.request_check(CheckRequest(conn.id, result.iteration, self.definition.layers,
                                            self.definition.normalization, params,
                                            worker.work_shards, worker.work_seed, result))
        assert self.window is not None
        self.window.waiting.discard(conn.id)
        if not self.window.waiting:
            self.wake.set()

    def leave(self, conn: Connection) -> None:
        """A client went away: its shards go to the others now, and the loop stops waiting for it."""
        self.trackers.pop(conn.id, None)
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

    def _trust_problem(self, worker: Worker, result: Result, elapsed_ms: float) -> str | None:
        """Why a well-formed, on-time result cannot be believed (counted like `late`), or None."""
        if not worker.trust.trusted or worker.conn.id in self.banned:
            return "untrusted"
        if len(result.steps) > max(1, worker.codecs.local_steps):
            return "implausible_count"
        # Each local step walks its own seeded order of the work's examples (at most one pass each).
        if trust.count_problem(result.count, worker.work_examples * max(1, len(result.steps))):
            return "implausible_count"
        if trust.timing_problem(result.compute_ms, elapsed_ms, self.trust_settings):
            return "implausible_time"
        return None

    def _reduction(self, examples: int) -> Reduction:
        return Reduction(self.param_count, self.aggregation, self.centre, self.clip_tau, examples)

    def _watch_refusals(self, closed: Window) -> None:
        """Many iterations in a row whose every result was refused: say so (error source `trust`)."""
        c = self.counters
        refused, c.refused_seen = c.dropped.total() - c.refused_seen, c.dropped.total()
        if self.reduction.contributors or not refused:
            c.refused_streak = 0
            self.clear_error("trust")
            return
        c.refused_streak += 1
        if c.refused_streak >= self.settings.refused_iterations_error and (self.error is None or self.error.source == "trust"):
            reasons = ", ".join(f"{reason} {n}" for reason, n in c.dropped.most_common())
            self.error = ProjectError(
                f"every result of the last {c.refused_streak} iterations was refused ({reasons}): the project is "
                "not learning; see the workers table", time.time(), closed.iteration, c.refused_streak, source="trust")

    def _train_ids(self, shards: tuple[str, ...]) -> set[str]:
        return {s for s in shards if s in self.allocation.shard_counts}

    def _welcome(self, client_id: str, role: str, codecs: WelcomeCodecs | None = None) -> bytes:
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
            codecs=codecs.to_json() if codecs is not None else None,
        )


def _checkable(result: Result) -> bool:
    """Whether the verifier can recompute a result: not through a lossy codec's error feedback (the client's
    residual is private) nor local steps (not recomputed yet); docs/security.md lists this as open."""
    return result.codec == "f32" and not result.steps
