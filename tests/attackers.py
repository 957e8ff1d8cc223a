"""Scripted attackers (and their honest reference) that speak the protocol over a real WebSocket.

Every attack of issue 10 as a `Behaviour`: given the `work` a client was sent, what it answers. The
honest answer is the numpy engine on the work's seeded example order (tests/master_support.py
`Trainer.compute`); an attack starts from it and lies. `run_client` drives one connection frame by frame
until the master closes it, a fatal error arrives, the behaviour leaves, or the caller cancels it, and
keeps a `Record` of what happened (results sent, the fatal error and the iteration it came at).
tests/test_trust_attacks.py asserts on these against a real master; bench/poisoning.py measures them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from mlitb.closure import Normalization
from mlitb.data.shards import decode_shard
from mlitb.model import Net
from mlitb.protocol import result_frame
from mlitb.worker.compute import WorkExamples, WorkResult, gather, recompute
from tests.master_support import Trainer

EXAMPLES = 64  # examples an honest client computes per work (one batch)
IDLE_S = 120.0  # a client that hears nothing for this long gives up (bounds every run)


@dataclass
class Board:
    """Honest results as they were sent, per iteration: what a replaying attacker copies (an eavesdropper
    or a colluding second connection holds exactly these bytes)."""

    frames: dict[int, bytes] = field(default_factory=dict)
    posted: asyncio.Event = field(default_factory=asyncio.Event)

    def post(self, iteration: int, frame: bytes) -> None:
        self.frames.setdefault(iteration, frame)
        self.posted.set()

    async def take(self, iteration: int, timeout: float) -> bytes | None:
        """An honest client's result frame for `iteration`, once one is posted (None after `timeout`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while iteration not in self.frames:
                    self.posted.clear()
                    await self.posted.wait()
        return self.frames.get(iteration)


@dataclass
class Work:
    """A `work` frame and what the client knows about it: the honest result, the examples it holds."""

    frame: dict[str, Any]
    honest: WorkResult
    held: int  # examples of the work's shards: the largest count the master can believe
    halves: WorkResult | None = None  # the first half batch alone (the bias attack estimates σ from it)

    @property
    def iteration(self) -> int:
        return self.frame["iteration"]


def send(result: WorkResult, iteration: int, *, grad: np.ndarray | None = None, count: int | None = None,
         compute_ms: float = 5.0) -> bytes:
    """A result frame from `result`, with its gradient sum and/or count replaced (loss and correct follow)."""
    n = result.count if count is None else int(count)
    g = result.grad_sum if grad is None else np.asarray(grad, np.float32)
    if count is None:
        return result_frame(iteration, g, n, result.loss_sum, result.correct, compute_ms, result.batches)
    scale = n / result.count
    return result_frame(iteration, g, n, result.loss_sum * scale, min(n, round(result.correct * scale)), compute_ms,
                        [n])


class Behaviour:
    """Honest: the numpy engine's result for the work, in one batch of `EXAMPLES`."""

    name = "honest"
    lies = False  # whether its results are wrong (a spot check must catch them)
    leaves_after: int | None = None  # works answered before it disconnects on its own

    async def answer(self, work: Work, board: Board) -> bytes | None:
        return send(work.honest, work.iteration)


class Scaled(Behaviour):
    name, lies = "scaled_x1000", True

    async def answer(self, work: Work, board: Board) -> bytes | None:
        return send(work.honest, work.iteration, grad=work.honest.grad_sum * 1000)


class SignFlip(Behaviour):
    name, lies = "sign_flip", True

    async def answer(self, work: Work, board: Board) -> bytes | None:
        return send(work.honest, work.iteration, grad=-work.honest.grad_sum)


class Noise(Behaviour):
    """Gaussian noise with the honest gradient's norm: passes any norm test."""

    name, lies = "noise", True

    def __init__(self) -> None:
        self.rng = np.random.default_rng()

    async def answer(self, work: Work, board: Board) -> bytes | None:
        noise = self.rng.standard_normal(work.honest.grad_sum.size).astype(np.float32)
        noise *= np.float32(np.linalg.norm(work.honest.grad_sum) / np.linalg.norm(noise))
        return send(work.honest, work.iteration, grad=noise)


class CountInflation(Behaviour):
    """count = 1e6 with a gradient sum scaled to match (the mean stays honest), compute_ms = 1."""

    name, lies = "count_inflation", True
    count = 10**6

    async def answer(self, work: Work, board: Board) -> bytes | None:
        scale = self.count / work.honest.count
        return send(work.honest, work.iteration, grad=work.honest.grad_sum * scale, count=self.count, compute_ms=1.0)


class OneShot(Behaviour):
    """One huge-count constant gradient (each coordinate the honest mean's RMS × 10), then leave: aimed at
    AdaGrad's accumulator."""

    name, lies, leaves_after = "one_shot", True, 1
    count = 10**6

    async def answer(self, work: Work, board: Board) -> bytes | None:
        g = work.honest.grad_sum / work.honest.count
        level = 10 * float(np.sqrt(np.mean(np.square(g, dtype=np.float64))))
        return send(work.honest, work.iteration, grad=np.full(g.size, level * self.count, np.float32), count=self.count)


class InflateLeave(Behaviour):
    """The largest believable count (every example of the work's shards) with a mean 100× the honest one,
    for two works, then leave."""

    name, lies, leaves_after = "inflate_then_leave", True, 2

    async def answer(self, work: Work, board: Board) -> bytes | None:
        mean = work.honest.grad_sum / work.honest.count
        return send(work.honest, work.iteration, grad=mean * (100 * work.held), count=work.held)


class LittleBias(Behaviour):
    """"A little is enough" (Baruch et al. 2019): the honest mean shifted by z·σ per coordinate against its
    sign, σ the batch-to-batch spread the client estimates from two half batches; within honest variance."""

    name, lies = "little_bias", True
    z = 1.0

    async def answer(self, work: Work, board: Board) -> bytes | None:
        g = work.honest
        half = work.halves
        a = half.grad_sum / half.count
        b = (g.grad_sum - half.grad_sum) / (g.count - half.count)
        sigma = np.abs(a - b) / 2  # σ of a full-batch mean ≈ |a − b| / 2 for two independent halves
        mean = g.grad_sum / g.count
        return send(g, work.iteration, grad=(mean - self.z * sigma * np.sign(mean)) * g.count)


class Hoard(Behaviour):
    """Takes its share of the shards, reports them cached, and never answers."""

    name = "hoard"

    async def answer(self, work: Work, board: Board) -> bytes | None:
        return None


class LieTime(Behaviour):
    """An honest gradient, but compute_ms far above the time the master measured (to look slow and get
    a bigger budget, or to poison latency estimates)."""

    name, lies = "lie_time", True

    async def answer(self, work: Work, board: Board) -> bytes | None:
        return send(work.honest, work.iteration, compute_ms=60_000.0)


class Replay(Behaviour):
    """Sends another (honest) client's result for the same iteration, byte for byte."""

    name, lies = "replay", True

    async def answer(self, work: Work, board: Board) -> bytes | None:
        return await board.take(work.iteration, timeout=10.0)


ATTACKS: dict[str, type[Behaviour]] = {b.name: b for b in (Scaled, SignFlip, Noise, CountInflation, OneShot, InflateLeave,
                                                            LittleBias, Hoard, LieTime, Replay)}


@dataclass
class Record:
    """What one client saw: results sent, the project iteration it last saw, and how it ended."""

    name: str
    client_id: str = ""
    sent: int = 0
    last_iteration: int = -1
    first_work: int | None = None  # the iteration of its first work
    fatal: dict[str, Any] | None = None  # the fatal error frame, if the master sent one
    fatal_iteration: int | None = None  # the last iteration it had seen when that came
    idle: list[str] = field(default_factory=list)
    slow_at: int | None = None  # the iteration it was told `idle: excluded` (too slow: no answers)
    ended: str = ""  # fatal / closed / left / cancelled

    @property
    def excluded_after(self) -> int | None:
        """Iterations from its first work to its exclusion (None: not excluded)."""
        if self.fatal is None or self.first_work is None:
            return None
        return self.fatal_iteration - self.first_work


async def _read_last_words(trainer: Trainer, record: Record) -> None:
    """The master closed the socket while this client was sending: the frames it sent before closing
    (a fatal error among them) are still buffered here; read them."""
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        for _ in range(1000):  # bounded: a closed socket holds only what arrived before the close
            async with asyncio.timeout(5):
                message = await trainer.receive(timeout=None)
            if message["type"] == "error" and message.get("fatal"):
                record.fatal, record.fatal_iteration, record.ended = message, record.last_iteration, "fatal"
                return
            if message["type"] == "params":
                record.last_iteration = message["iteration"]


class Client:
    """One connection: a `Trainer` plus a cache of decoded shards and gathered example sets."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.gathered: dict[tuple[str, ...], WorkExamples] = {}
        self.net: Net | None = None

    async def cache_assigned(self, http: httpx.AsyncClient) -> None:
        """Download every assigned shard it does not hold yet, then report its cache."""
        t = self.trainer
        dataset = t.welcome["dataset"]
        for ref in t.assigned:
            if ref["id"] not in t.shards:
                blob = (await http.get(f"{dataset['url']}/datasets/{dataset['id']}/shards/{ref['id']}")).content
                t.shards[ref["id"]] = decode_shard(blob)
        await t.send({"type": "cached", "shards": sorted(t.shards)})

    def work(self, frame: dict[str, Any], halves: bool) -> Work:
        """The honest result of `frame` (and, for the bias attack, that of its first half batch)."""
        t = self.trainer
        key = tuple(frame["shards"])
        if key not in self.gathered:
            self.gathered = {key: gather([t.shards[s] for s in key])}
        held = self.gathered[key]
        if self.net is None:
            self.net = Net(t.welcome["project"]["layers"])
        norm = t.welcome["project"]["normalization"]
        normalization = Normalization(norm["scale"], norm["offset"])
        params = t.params[frame["iteration"]]
        n = min(EXAMPLES, held.count)
        honest = recompute(self.net.gradient, params, held, normalization, frame["seed"], [n])
        work = Work(frame, honest, held.count)
        if halves:
            work.halves = recompute(self.net.gradient, params, held, normalization, frame["seed"], [n // 2])
        return work


async def run_client(ws_url: str, project: str, behaviour: Behaviour, board: Board, record: Record,
                     on_params: Callable[[int, np.ndarray], None] | None = None,
                     on_cached: Callable[[], None] | None = None) -> Record:
    """Drive one connection with `behaviour` until it ends; `record` is filled in as it goes."""
    async with connect(ws_url, max_size=None) as ws, httpx.AsyncClient(timeout=30) as http:
        trainer = Trainer(ws, "")
        client = Client(trainer)
        await trainer.hello(project)
        record.client_id = trainer.welcome["client_id"]
        answered = 0
        try:
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel that ends the run.
                async with asyncio.timeout(IDLE_S):
                    message = await trainer.receive(timeout=None)
                kind = message["type"]
                if kind == "params":
                    record.last_iteration = message["iteration"]
                    for old in [i for i in trainer.params if i < message["iteration"] - 2]:
                        del trainer.params[old]
                    if on_params is not None:
                        on_params(message["iteration"], trainer.params[message["iteration"]])
                elif kind == "assign":
                    await client.cache_assigned(http)
                    if on_cached is not None:
                        on_cached()
                elif kind == "idle":
                    record.idle.append(message["reason"])
                    if message["reason"] == "excluded" and record.slow_at is None:
                        record.slow_at = record.last_iteration
                elif kind == "error" and message.get("fatal"):
                    record.fatal, record.fatal_iteration, record.ended = message, record.last_iteration, "fatal"
                    return record
                elif kind == "work":
                    if record.first_work is None:
                        record.first_work = message["iteration"]
                    work = client.work(message, halves=isinstance(behaviour, LittleBias))
                    frame = await behaviour.answer(work, board)
                    if frame is None:
                        continue
                    await trainer.send(frame)
                    record.sent += 1
                    answered += 1
                    if not behaviour.lies:
                        board.post(work.iteration, frame)
                    if behaviour.leaves_after is not None and answered >= behaviour.leaves_after:
                        record.ended = "left"
                        return record
        except ConnectionClosed:
            record.ended = "closed"
            await _read_last_words(trainer, record)
        except asyncio.CancelledError:
            record.ended = "cancelled"
            raise
    return record


@dataclass
class Run:
    """A fleet's outcome: every client's record and the parameters after `iterations` iterations."""

    records: list[Record]
    params: np.ndarray


async def run_fleet(ws_url: str, project: str, behaviours: list[Behaviour], iterations: int,
                    start: Callable[[], Awaitable[Any]], timeout: float = 180.0,
                    until: Callable[[list[Record]], bool] | None = None) -> Run:
    """Connect every behaviour's client to the (paused) project; once each holds its first assignment,
    `start` it, so every client is in from iteration 0; return when an honest client sees the parameters
    after `iterations` iterations and `until(records)` holds, if given (the clients are then cancelled).
    TimeoutError after `timeout` s."""
    board = Board()
    records = [Record(b.name) for b in behaviours]
    loop = asyncio.get_running_loop()
    reached: asyncio.Future[np.ndarray] = loop.create_future()
    cached: list[asyncio.Future[None]] = [loop.create_future() for _ in behaviours]

    def ready(i: int) -> Callable[[], None]:
        return lambda: cached[i].done() or cached[i].set_result(None)

    def watch(iteration: int, params: np.ndarray) -> None:
        if iteration >= iterations and not reached.done() and (until is None or until(records)):
            reached.set_result(params.copy())

    tasks = [asyncio.create_task(run_client(ws_url, project, b, board, r,
                                            watch if not b.lies and b.name == "honest" else None, ready(i)))
             for i, (b, r) in enumerate(zip(behaviours, records))]

    def surface(task: asyncio.Task) -> None:  # a client that crashed fails the run at once, not by timeout
        if not task.cancelled() and task.exception() is not None and not reached.done():
            reached.set_exception(task.exception())

    for task in tasks:
        task.add_done_callback(surface)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*cached)
            await start()
            params = await reached
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Run(records, params)


async def held_out_accuracy(store: Any, runtime: Any, params: np.ndarray, examples: int = 10_000) -> float:
    """Test accuracy of `params` on the first `examples` of the project's test split (the master's own
    evaluation code, run here in-process: the attacks' effect, measured without the evaluator's timing)."""
    from mlitb.master.evaluation import (
        TestSource,
        decode_test_set,
        evaluate,
        fetch_test_blobs,
    )

    d, m = runtime.definition, runtime.manifest
    blobs = await fetch_test_blobs(store, m, examples)
    test = decode_test_set(TestSource(d.layers, blobs, d.normalization, tuple(m.shape), examples))
    return evaluate(runtime.net, params, test).accuracy
