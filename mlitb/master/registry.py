"""The projects a master hosts: in memory while it runs, in the store across restarts.

Persistence is two keys per project: the definition (JSON, small, written on
every change) and the checkpoint (msgpack, written every `checkpoint_every`
iterations and on pause and shutdown, encoded in a thread). A restarted
master loads both and starts again every project whose status was running.
The registry also runs the side tasks a loop asks for (evaluation,
checkpoints) so the loop itself never awaits I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlitb.data.catalog import get_manifest, shard_key
from mlitb.master import evaluation
from mlitb.master.checkpoint import Checkpoint
from mlitb.master.checkpointer import Checkpointer, Policy
from mlitb.master.connection import Connection
from mlitb.master.definition import ProjectDef
from mlitb.master.evaluator import Evaluator
from mlitb.master.loop import run_project
from mlitb.master.predict_process import PredictProcess
from mlitb.master.runtime import CheckRequest, ProjectError, ProjectRuntime
from mlitb.master.settings import Settings
from mlitb.master.supervision import RestartPolicy, supervise
from mlitb.master.verification import Claim, VerifySettings, Work
from mlitb.master.verifier import Verifier
from mlitb.protocol import Hello, ProtocolError, error_frame
from mlitb.store import Store, StoreError
from mlitb.tasks import log_crash

log = logging.getLogger("mlitb.master")


def eval_key(rt: ProjectRuntime) -> str:
    """The evaluation process caches a project's net and test set under this: a grown net is another key."""
    return f"{rt.id}/{rt.param_count}"


def definition_key(project_id: str) -> str:
    return f"projects/{project_id}/definition"


def checkpoint_key(project_id: str) -> str:
    return f"projects/{project_id}/checkpoint"


@dataclass
class _SideTasks:
    """A project's background work: at most one evaluation at a time (checkpoints: `Checkpointer`), and spot
    checks, which a pause does not wait for (they only update trust records, and can take seconds each)."""

    evaluating: asyncio.Task | None = None
    all: set[asyncio.Task] = field(default_factory=set)
    checks: set[asyncio.Task] = field(default_factory=set)
    eval_keys: set[str] = field(default_factory=set)  # the evaluation process's cache keys of this project
    # The evaluation of a closure's parameters in flight, by iteration: concurrent downloads share it.
    snapshot_eval: tuple[int, asyncio.Task] | None = None


class Registry:
    """Every hosted project by id; the lobby WebSocket clients join through."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.projects: dict[str, ProjectRuntime] = {}
        self._side: dict[str, _SideTasks] = {}
        self.checkpoints = Checkpointer(store, Policy(settings.checkpoint_every, settings.checkpoint_interval_s))
        self.evaluator = Evaluator()
        self.verifier = Verifier(VerifySettings(tolerance=settings.verify_tolerance, queue=settings.verify_queue))
        self.predict_process = PredictProcess()  # predictions while no worker takes them, and their spot checks

    # ------------------------------------------------------------ lifecycle

    async def load(self) -> None:
        """Every stored project; the running ones start iterating again."""
        for key in await self.store.keys("projects/"):
            if key.endswith("/definition"):
                await self.adopt(key.split("/")[1])

    async def adopt(self, project_id: str) -> ProjectRuntime | None:
        """Load one stored project from its last checkpoint (running: it starts); None if it cannot be."""
        raw_definition = await self.store.get(definition_key(project_id))
        if raw_definition is None:
            return None
        definition = ProjectDef.from_json(raw_definition)
        raw = await self.store.get(checkpoint_key(definition.id))
        try:
            rt = await self._build(definition, Checkpoint.decode(raw) if raw else None)
        except LookupError as exc:
            log.warning("project %s not loaded: %s", definition.id, exc)
            return None
        self._add(rt)
        return rt

    async def hand_over(self, project_id: str, last_frame: bytes, flush: bool = True) -> None:
        """Stop a project here after its final checkpoint (a graceful hand-over to another master)."""
        rt = self.projects.get(project_id)
        if rt is None:
            return
        await self._stop(rt)
        await self.settle(rt)
        if flush:
            self._save(rt)
            await self.checkpoints.flush(self.settings.checkpoint_flush_s)
        await self.release(project_id, last_frame)

    async def release(self, project_id: str, last_frame: bytes) -> None:
        """Forget a project this master no longer owns: loop stopped, nothing more written, clients sent on."""
        rt = self.projects.pop(project_id, None)
        if rt is None:
            return
        await self._stop(rt)
        side = self._side.pop(rt.id)
        for task in side.all | side.checks:
            task.cancel()
        self.evaluator.forget(rt.id)
        for worker in list(rt.workers.values()):
            worker.conn.close(last_frame)
        for tracker in list(rt.trackers.values()):
            tracker.close(last_frame)
        await self.checkpoints.drop(definition_key(rt.id), checkpoint_key(rt.id))

    async def close(self) -> None:
        """Stop every loop and write a final checkpoint; statuses stay as they are, to resume."""
        for rt in list(self.projects.values()):
            await self._stop(rt)
            for task in self._side[rt.id].checks:
                task.cancel()
            await self.settle(rt)
            self._save(rt)
        await self.checkpoints.flush(self.settings.checkpoint_flush_s)
        await self.checkpoints.close()
        await self.evaluator.close()
        await self.verifier.close()
        for rt in self.projects.values():
            rt.predictions.close()
        await self.predict_process.close()

    # ------------------------------------------------------------ researcher actions

    async def create(self, definition: ProjectDef, checkpoint: Checkpoint | None = None) -> ProjectRuntime:
        rt = await self._build(definition, checkpoint)
        await self.store.put(definition_key(definition.id), definition.to_json())
        await self._checkpoint(rt)
        self._add(rt)
        return rt

    async def start(self, rt: ProjectRuntime) -> None:
        if rt.running:
            return
        rt.clear_error()
        await self._set_definition(rt, rt.definition.with_status("running"))
        rt.broadcast_idle("waiting")
        self._launch(rt)

    async def pause(self, rt: ProjectRuntime) -> None:
        if not rt.running:
            return
        await self._set_definition(rt, rt.definition.with_status("paused"))
        await self._stop(rt)
        rt.broadcast_idle("paused")
        await self.settle(rt)
        self._save(rt)
        await self.checkpoints.flush(self.settings.checkpoint_flush_s)

    async def fail(self, rt: ProjectRuntime, error: str) -> None:
        """Pause a project the master cannot go on training, with a reason the API shows."""
        if self.projects.get(rt.id) is not rt:
            return  # deleted meanwhile: pausing would write its definition back
        if rt.error is None or rt.error.message != error:
            log.warning("project %s: %s", rt.id, error)
        rt.record_error(ProjectError(error, time.time(), rt.iteration, 1, source="dataset"))
        await self.pause(rt)

    async def update(self, rt: ProjectRuntime, definition: ProjectDef) -> None:
        """A PATCHed definition; the loop reads T and the optimizer at the next boundary."""
        await self._set_definition(rt, definition)

    async def delete(self, rt: ProjectRuntime) -> None:
        await self._stop(rt)
        side = self._side.pop(rt.id)
        for task in side.all | side.checks:
            task.cancel()
        for key in side.eval_keys | {eval_key(rt)}:
            self.evaluator.forget(key)
        del self.projects[rt.id]
        for worker in list(rt.workers.values()):
            worker.conn.close(error_frame("unknown_project", "the project was deleted", fatal=True))
        for tracker in list(rt.trackers.values()):
            tracker.close()
        for predictor in list(rt.predictors.values()):
            predictor.close(error_frame("unknown_project", "the project was deleted", fatal=True))
        rt.predictions.close()
        await self.checkpoints.drop(definition_key(rt.id), checkpoint_key(rt.id))
        await self.store.delete(definition_key(rt.id), checkpoint_key(rt.id))

    async def settle(self, rt: ProjectRuntime) -> None:
        """Wait for the project's background evaluation and checkpoint writes in flight now."""
        pending = list(self._side[rt.id].all)
        if pending:
            await asyncio.wait(pending)

    # ------------------------------------------------------------ the lobby

    def default_project(self) -> ProjectRuntime | None:
        wanted = self.settings.default_project
        if wanted in self.projects:
            return self.projects[wanted]
        running = [rt for rt in self.projects.values() if rt.running]
        candidates = running or list(self.projects.values())
        return min(candidates, key=lambda rt: rt.definition.created) if candidates else None

    def join(self, conn: Connection, hello: Hello) -> ProjectRuntime:
        rt = self.projects.get(hello.project) if hello.project else self.default_project()
        if rt is None:
            raise ProtocolError("unknown_project", f"no project {hello.project!r} on this master (GET /api/projects lists them)", fatal=True)
        rt.join(conn, hello)
        return rt

    # ------------------------------------------------------------ internals

    async def _build(self, definition: ProjectDef, checkpoint: Checkpoint | None) -> ProjectRuntime:
        manifest = await get_manifest(self.store, definition.dataset)
        if manifest is None:
            raise LookupError(f"dataset {definition.dataset!r} is not in the store")
        return ProjectRuntime.build(definition, manifest, self.settings, checkpoint)

    def _add(self, rt: ProjectRuntime) -> None:
        self.projects[rt.id] = rt
        side = self._side[rt.id] = _SideTasks()
        rt.request_check = lambda request: self._spawn(side, self._check(rt, request), check=True)
        if rt.running:
            self._launch(rt)

    def _launch(self, rt: ProjectRuntime) -> None:
        policy = RestartPolicy(self.settings.loop_tries, self.settings.loop_backoff_s)
        loop = supervise(rt, lambda: run_project(rt, self._after_reduce), policy, self._give_up)
        task = asyncio.create_task(loop, name=f"loop-{rt.id}")
        task.add_done_callback(log_crash(log))
        rt.attach_task(task)
        self.evaluator.start()

    async def _give_up(self, rt: ProjectRuntime) -> None:
        """The loop failed `loop_tries` times in a row: paused (from inside its own task), error kept for the API."""
        rt.detach_task()
        await self._set_definition(rt, rt.definition.with_status("paused"))
        rt.broadcast_idle("paused")
        self._save(rt)

    async def _stop(self, rt: ProjectRuntime) -> None:
        """Cancel the loop; the open iteration's results are discarded, its params stay current."""
        task = rt.detach_task()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        rt.discard_open_iteration()

    async def _set_definition(self, rt: ProjectRuntime, definition: ProjectDef) -> None:
        rt.set_definition(definition)
        self.checkpoints.put(definition_key(rt.id), definition.to_json())

    def _after_reduce(self, rt: ProjectRuntime) -> None:
        side = self._side[rt.id]
        if rt.take_grown():  # new classes: the definition's layers changed, and the old net's test cache is stale
            self.checkpoints.put(definition_key(rt.id), rt.definition.to_json())
            self._save(rt)
            for key in side.eval_keys - {eval_key(rt)}:
                self.evaluator.forget(key)
            side.eval_keys &= {eval_key(rt)}
        if rt.iteration % rt.definition.eval_every == 0 and side.evaluating is None:
            side.evaluating = self._spawn(side, self._evaluate(rt, side, rt.iteration - 1, rt.params.copy()))
        if self.checkpoints.due(checkpoint_key(rt.id), rt.iteration):
            self._save(rt)

    def _spawn(self, side: _SideTasks, coro: Any, check: bool = False) -> asyncio.Task:
        task = asyncio.create_task(coro)
        tasks = side.checks if check else side.all
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(log_crash(log))
        return task

    async def _evaluate(self, rt: ProjectRuntime, side: _SideTasks, iteration: int, params: np.ndarray) -> None:
        """Test loss and accuracy of the params after `iteration`, written into that iteration's record."""

        try:
            result = await self.evaluator.evaluate(eval_key(rt), params, self._test_source(rt))
        except Exception as exc:  # training goes on without test figures; the researcher is told why
            first = rt.error is None
            if not rt.record_evaluation_failure(iteration, exc):  # a graver error stays the one shown
                log.error("project %s: test evaluation after iteration %d failed: %s", rt.id, iteration, exc)
            elif first:  # logged once per run of failures, with a traceback unless the store is away
                log.error("project %s: test evaluation after iteration %d failed: %s", rt.id, iteration, exc,
                          exc_info=None if isinstance(exc, StoreError) else exc)
            return
        finally:
            side.evaluating = None
        rt.record_evaluation(iteration, result.loss, result.accuracy, result.class_accuracy)

    def _test_source(self, rt: ProjectRuntime) -> Callable[[], Awaitable[evaluation.TestSource]]:
        """The test set loader for the project's net as it is now (the key names its layout: eval_key)."""
        layers, manifest = rt.definition.layers, rt.manifest
        self._side[rt.id].eval_keys.add(eval_key(rt))

        async def source() -> evaluation.TestSource:
            blobs = await evaluation.fetch_test_blobs(self.store, manifest, self.settings.eval_max_examples)
            return evaluation.TestSource(layers, blobs, rt.definition.normalization,
                                         tuple(manifest.shape), self.settings.eval_max_examples)

        return source

    async def evaluate_snapshot(self, rt: ProjectRuntime, snapshot: Checkpoint) -> None:
        """Test figures for a closure's own parameters (those after iteration `snapshot.iteration - 1`),
        written into that iteration's record when it has none yet: so the closure's last recorded
        test figures are of the parameters it holds, and `mlitb verify` can reproduce them."""
        last = snapshot.iteration - 1
        record = next((m for m in reversed(snapshot.metrics) if m["iteration"] == last), None)
        if record is None or record.get("test_accuracy") is not None:
            return
        side = self._side.get(rt.id)
        if side is None:  # deleted meanwhile
            return
        if side.snapshot_eval is None or side.snapshot_eval[0] != last or side.snapshot_eval[1].done():
            # one evaluation per iteration however many clients download at once (closure downloads are public)
            side.snapshot_eval = (last, self._spawn(side, self._evaluate_snapshot(rt, last, snapshot.params)))
        await asyncio.shield(side.snapshot_eval[1])

    async def _evaluate_snapshot(self, rt: ProjectRuntime, last: int, params: np.ndarray) -> None:
        try:
            result = await self.evaluator.evaluate(eval_key(rt), params, self._test_source(rt))
        except Exception as exc:  # the closure is still worth having without them
            log.error("project %s: evaluating the closure's parameters failed: %s", rt.id, exc, exc_info=exc)
            return
        rt.record_evaluation(last, result.loss, result.accuracy, result.class_accuracy)

    async def _check(self, rt: ProjectRuntime, request: CheckRequest) -> None:
        """Recompute one result in the verifier process (spot check); the runtime acts on the verdict."""
        blobs = []
        for shard_id in request.shards:
            try:
                blob = await self.store.get(shard_key(shard_id))
            except StoreError as exc:  # an outage the checkpointer reports already; the result goes unchecked
                log.debug("project %s: spot check dropped, its shards cannot be read: %s", rt.id, exc)
                rt.record_check_dropped()
                return
            if blob is None:
                return  # the dataset changed under the check: nothing to hold against the client
            blobs.append(blob)
        result = request.result
        work = Work(request.layers, request.normalization, request.params, tuple(blobs), request.seed)
        claim = Claim(result.grad_sum.tobytes(), result.count, result.loss_sum, result.correct, result.batches,
                      result.steps, request.local_learning_rate)
        verdict = await self.verifier.verify(work, claim, wait=request.conformance is not None)
        if verdict is None:
            rt.record_check_dropped()
            return
        if request.conformance is not None:
            request.conformance.record({
                "worker": request.worker_id, "iteration": request.iteration, "count": result.count,
                "batches": len(result.batches), "passed": verdict.passed,
                "grad_error": verdict.grad_error if math.isfinite(verdict.grad_error) else None,
                "worst_block": verdict.worst_block, "reasons": list(verdict.reasons)})
        rt.record_check(request.worker_id, verdict.passed, verdict.reasons)

    def _save(self, rt: ProjectRuntime) -> None:
        """Queue a checkpoint: a snapshot now (consistent), encoded and written off the loop, newest wins."""
        self.checkpoints.save(checkpoint_key(rt.id), rt.snapshot())

    async def _checkpoint(self, rt: ProjectRuntime) -> None:
        """A new project's first checkpoint, written before its creation is acknowledged."""
        blob = await asyncio.to_thread(rt.snapshot().encode)
        await self.store.put(checkpoint_key(rt.id), blob)
