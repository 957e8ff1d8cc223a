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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from mlitb.data.manifest import Manifest
from mlitb.grow import grow_classes, widen
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
from mlitb.master.credit import Ledger
from mlitb.master.definition import ProjectDef
from mlitb.master.param_frames import ParamFrames
from mlitb.master.predict_service import PredictService
from mlitb.master.settings import Settings
from mlitb.master.trust import TrustSettings
from mlitb.model import Net
from mlitb.model.layout import lr_multipliers
from mlitb.optim import Optimizer, hyper_of, optimizer_from_spec
from mlitb.protocol import (
    ClientInfo,
    Hello,
    Prediction,
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


@dataclass
class Conformance:
    """A worker author's request (`mlitb conformance`): recompute the next `wanted` results of a worker
    (any trainer when `worker_id` is None) and report every verdict, passed or not."""

    worker_id: str | None
    wanted: int
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    claimed: int = 0  # results already sent to the verifier for it
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, worker_id: str) -> bool:
        return self.claimed < self.wanted and self.worker_id in (None, worker_id)

    def record(self, verdict: dict[str, Any]) -> None:
        self.verdicts.append(verdict)
        if len(self.verdicts) >= self.wanted:
            self.done.set()


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
    conformance: Conformance | None = None
    local_learning_rate: float = 0.0  # with local steps: the recomputation takes the same local SGD steps  # asked for by a worker author: always run, always reported


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


def with_classes(definition: ProjectDef, num_classes: int) -> ProjectDef:
    """The definition with `num_classes` outputs: a checkpoint written after the net grew may meet the
    definition from before (they are two keys), and the checkpoint's parameters decide."""
    if definition.layers[-1].get("num_classes") == num_classes:
        return definition
    layers = [dict(layer) for layer in definition.layers]
    layers[-1]["num_classes"] = num_classes
    return replace(definition, layers=layers)


def element_lr(net: Net, per_layer: list[float] | None) -> np.ndarray | None:
    """The optimizer's per-element learning-rate multipliers for a definition's per-layer ones."""
    return None if per_layer is None else lr_multipliers(net.layers, net.layout, per_layer)


def legacy_steps(checkpoint: Checkpoint) -> int:
    """Steps of a checkpoint written before they were counted: Adam's `t` knows; otherwise the iteration."""
    t = checkpoint.optimizer_state.get("t")
    return int(np.asarray(t).reshape(-1)[0]) if t is not None else checkpoint.iteration


def aggregation_settings(rule: str) -> AggregationSettings:
    """A project's aggregation: `mean` is the plain count-weighted mean (capped at allocations only)."""
    return AggregationSettings(rule=rule, max_share=1.0) if rule == "mean" else AggregationSettings(rule=rule)


log = logging.getLogger("mlitb.master")


class ProjectRuntime:
    """One hosted project, and the only writer of its state. Built with `ProjectRuntime.build`."""

    def __init__(self, definition: ProjectDef, net: Net, manifest: Manifest, params: np.ndarray,
                 optimizer: Optimizer, iteration: int, metrics: list[dict[str, Any]], settings: Settings,
                 credit: Ledger | None = None, steps: int = 0, class_since: list[int] | None = None) -> None:
        self.definition = definition
        self.net = net
        self.manifest = manifest
        self.params = params
        self.optimizer = optimizer
        self.iteration = iteration
        # Optimizer steps taken: an iteration closed without results takes none (Adam's `t` equals this).
        self.steps = steps
        # The iteration from which each class was in the net (0: from the start; later: a class the dataset gained).
        self.class_since = list(class_since) if class_since is not None else [0] * net.num_classes
        # Set when the net grew, until the registry has persisted the new definition (take_grown).
        self.grown = False
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
        self.window: Window | None = None
        self.counters = Counters()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        # False once this master may no longer own the project (its lease ran out, cluster.py): no more broadcasts.
        self.lease_valid: Callable[[], bool] = lambda: True
        # Trust (docs/security.md): robust aggregation's state, spot checks, bans.
        self.aggregation = aggregation_settings(definition.aggregation)
        self.norm_history = NormHistory(self.aggregation.norm_window)
        self.centre: np.ndarray | None = None  # the last aggregate: centered clipping's centre
        self.clip_tau: float | None = None  # its radius, from the last iteration's distances
        self.reduction = self._reduction(0)
        self.iteration_params = b""  # the parameters the open iteration's work is computed with
        self.trust_settings = trust.TrustSettings()
        self.banned: set[str] = set()
        self.typical_count: int | None = None  # the last iteration's median result count (probation weights)
        self.request_check: Callable[[CheckRequest], None] | None = None  # set by the registry
        self.conformance: list[Conformance] = []
        self.credit = credit or Ledger.load(None)
        # Codecs (docs/protocol.md, "Codecs"): each parameter codec's frames, encoded once per iteration.
        self.param_frames = ParamFrames(full_every=definition.link_settings.full_every)
        self._rng = random.Random(secrets.randbits(64))

    @classmethod
    def build(cls, definition: ProjectDef, manifest: Manifest, settings: Settings,
              checkpoint: Checkpoint | None = None) -> ProjectRuntime:
        """A project from its definition, fresh (parameters from its seed) or resumed from a checkpoint."""
        if checkpoint is not None and checkpoint.class_since is not None:
            definition = with_classes(definition, len(checkpoint.class_since))
        net = Net(definition.layers)
        optimizer = optimizer_from_spec(definition.optimizer, net.layout)
        optimizer.set_lr_multipliers(element_lr(net, definition.lr_multipliers))
        class_since = None
        if checkpoint is None:
            params, iteration, metrics, steps = net.init_params(definition.seed), 0, [], 0
        else:
            class_since = checkpoint.class_since
            optimizer.load_state_dict(checkpoint.optimizer_state)
            params, iteration, metrics = checkpoint.params, checkpoint.iteration, checkpoint.metrics
            steps = checkpoint.steps if checkpoint.steps is not None else legacy_steps(checkpoint)
        if params.shape != (net.param_count,):
            raise ValueError(f"the checkpoint holds {params.size} parameters, the layers need {net.param_count}")
        credit = Ledger.load(checkpoint.credit if checkpoint else None)
        return cls(definition, net, manifest, params, optimizer, iteration, metrics, settings, credit, steps,
                   class_since)

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
            steps=self.steps,
            class_since=list(self.class_since),
            credit=self.credit.dump(),
        )

    # ------------------------------------------------------------ the researcher and the supervisor

    def set_definition(self, definition: ProjectDef) -> None:
        """A changed definition (status, name, T, hyper-parameters, aggregation); read at the next boundary."""
        if definition.optimizer != self.definition.optimizer:
            self.optimizer.set_hyper(hyper_of(definition.optimizer))
        if definition.lr_multipliers != self.definition.lr_multipliers:
            self.optimizer.set_lr_multipliers(element_lr(self.net, definition.lr_multipliers))
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

    def record_evaluation(self, iteration: int, loss: float, accuracy: float,
                          class_accuracy: tuple[float | None, ...] = ()) -> None:
        """Test figures of the parameters after `iteration`, written into that iteration's record
        (per class: None where the test split has no example of it)."""
        self.clear_error("evaluation")
        for record in reversed(self.metrics):
            if record["iteration"] == iteration:
                record["test_loss"], record["test_accuracy"] = loss, accuracy
                if class_accuracy:
                    record["test_class_accuracy"] = list(class_accuracy)
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
        if total.counts:
            self.typical_count = int(np.median(total.counts))
        elapsed = max(now - closed.started, 1e-9)
        c = self.counters
        if total.contributors:  # reduce_step took an optimizer step exactly when a result was accepted
            self.steps += 1
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

    def grow(self) -> bool:
        """Give the net an output for each class the dataset gained (between two iterations, no window open).

        The softmax's fc layer gets new rows initialised like a fresh net's and zero optimizer state
        (mlitb/grow.py). Every client holds the old layout, so each is sent a `reconnect` error and
        closed: it comes back with a `hello`, and its `welcome` carries the new layers (docs/protocol.md).
        Returns whether the net grew.
        """
        classes = len(self.manifest.classes)
        if classes <= self.net.num_classes or self.window is not None:
            return False
        added = list(self.manifest.classes[self.net.num_classes:])
        layers, params, state = grow_classes(self.definition.layers, self.params, self.optimizer.state_dict(),
                                             classes, seed=self.definition.seed + self.iteration)
        definition = replace(self.definition, layers=layers)
        net = Net(layers)
        optimizer = optimizer_from_spec(definition.optimizer, net.layout)
        optimizer.load_state_dict(state)
        optimizer.set_lr_multipliers(element_lr(net, definition.lr_multipliers))
        old_net = self.net
        self.definition, self.net, self.params, self.optimizer = definition, net, params, optimizer
        if self.centre is not None:  # centered clipping's centre: the new outputs start with no history
            self.centre = widen(self.centre, old_net, net)
        self.reduction = self._reduction(0)
        self.class_since.extend([self.iteration] * len(added))
        self.grown = True
        frame = error_frame("reconnect", f"the net grew to {classes} classes (new: {', '.join(added)}) and has "
                                         f"{net.param_count} parameters now: reconnect to get the new layout")
        clients = {conn.id: conn for conn in [w.conn for w in self.workers.values()]
                   + list(self.trackers.values()) + list(self.predictors.values())}
        for conn in clients.values():
            self.leave(conn)
            conn.close(frame)
        return True

    def take_grown(self) -> bool:
        """Whether the net grew since the last call (the registry then persists the new definition)."""
        grown, self.grown = self.grown, False
        return grown

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
        if not passed:
            self.credit.revoke(worker_id)  # even after the client left: a refuted result earns nothing
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

    def ask_conformance(self, worker_id: str | None, results: int) -> Conformance:
        """Recompute the next `results` results of `worker_id` (any trainer: None) and keep every verdict."""
        if worker_id is not None and worker_id not in self.workers:
            raise LookupError(f"no trainer {worker_id!r} in project {self.id!r}")
        asked = Conformance(worker_id, results)
        self.conformance.append(asked)
        return asked

    def forget_conformance(self, asked: Conformance) -> None:
        if asked in self.conformance:
            self.conformance.remove(asked)

    def record_check_dropped(self) -> None:
        """The verifier was saturated or the store away: the sampled result goes unchecked (counted, in the API)."""
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
        if hello.role == "predictor":  # its parameters come with its first chunk of each iteration
            self.predictors[conn.id] = conn
            self.predictions.add_worker(conn)
            return
        conn.send_iteration(params_frame(self.iteration, self.params))
        if hello.role == "tracker":
            self.trackers[conn.id] = conn
            return
        self.workers[conn.id] = Worker(conn, hello.client, trust.TrustRecord(conn.id), codecs=chosen or WelcomeCodecs())
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
            if reason in trust.PROOF_OF_LIE:
                self._exclude_liar(worker, reason)
            return
        self.reduction.add(conn.id, result.grad_sum, result.count, self._weight_cap(worker), result.loss_sum,
                           result.correct)
        worker.accepted += 1
        worker.trust.accept(trust.throughput(result.count, elapsed_ms))
        self.credit.credit(conn.id, worker.info.volunteer, worker.info.name, result.count)
        asked = next((c for c in self.conformance if c.wants(conn.id)), None) if _checkable(result) else None
        if asked is not None:
            asked.claimed += 1
        if self.request_check is not None and _checkable(result) and (
                asked or trust.should_check(worker.trust, self._rng, self.trust_settings)):
            params = (self.iteration_params if worker.codecs.params == "f32"
                      else self.param_frames.held(worker.codecs.params))
            self.request_check(CheckRequest(conn.id, result.iteration, self.definition.layers,
                                            self.definition.normalization, params,
                                            worker.work_shards, worker.work_seed, result, asked,
                                            self.definition.link_settings.local_learning_rate))
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

    def _exclude_liar(self, worker: Worker, reason: str) -> None:
        """A result no honest client can send (trust.PROOF_OF_LIE): excluded for good, like a failed check."""
        what = ("its count exceeds the examples of the work's shards" if reason == "implausible_count"
                else "its compute_ms exceeds the time the master measured between sending the work and receiving it")
        worker.trust.exclude(f"sent an impossible result ({reason})")
        log.warning("project %s: client %s excluded: %s (%s)", self.id, worker.conn.id, what, reason)
        worker.conn.close(error_frame("untrusted", f"a result of this client is impossible ({reason}: {what}); this "
                                      "client is excluded from the project", fatal=True))

    def _weight_cap(self, worker: Worker) -> int:
        """The most examples a result may weigh: the work's; while the client's first checks are pending, also at
        most twice the last iteration's median count (before any iteration, 1: everybody weighs the same), so a
        newcomer claiming every example it holds cannot dominate before its check fails (inflate-then-leave)."""
        trusted = worker.trust.checks_passed >= self.trust_settings.check_first
        if trusted or self.aggregation.rule == "mean":  # the plain mean is the undefended baseline
            return worker.work_examples
        if self.typical_count is None:
            return 1
        return max(1, min(worker.work_examples, 2 * self.typical_count))

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
    residual is private; docs/security.md lists this as open). Local steps are recomputed step by step."""
    return result.codec == "f32"
