"""One trainer connection: hello, shards, then a gradient per iteration, for as long as it runs.

The connection is the unit the master schedules, so everything here serves
one rule: answer each `work` before its deadline, and never hold up the
socket. Downloads and compute run beside the receive loop (compute in a
thread), each fed through a one-slot mailbox so that a newer `assign` or
`work` replaces one not yet started. When the master goes away the trainer
reconnects with exponential backoff and full jitter (so a restarted master is
not hit by every worker at once) and reports the shards it still holds.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection

from mlitb import __version__
from mlitb.backoff import full_jitter_s
from mlitb.closure import Normalization
from mlitb.codecs import PARAM_CODECS, RESULT_CODECS
from mlitb.data.shards import Shard
from mlitb.local_steps import PartResult, run_local_steps
from mlitb.model import Net
from mlitb.protocol import (
    ProtocolError,
    cached_frame,
    decode,
    hello_frame,
    result_frame,
)
from mlitb.worker.compute import (
    WorkExamples,
    WorkResult,
    batch_size_for,
    compute,
    gather,
)
from mlitb.worker.link_codecs import LinkCodecs
from mlitb.worker.masters import MasterList
from mlitb.worker.predict import PredictQueue, predict_loop
from mlitb.worker.shard_cache import DEFAULT_DIR, ShardCache
from mlitb.worker.status import Progress

T = TypeVar("T")
MAX_FRAME_BYTES = 256 * 2**20
WELCOME_TIMEOUT_S = 30.0
FATAL_CODES = ("protocol_version", "unknown_project")
MIN_BATCH = 4
BATCHES_PER_BUDGET = 8


class FatalError(Exception):
    """The master refused this worker for a reason retrying cannot fix."""


class MovedError(Exception):
    """The master does not own the project (`moved` frame): reconnect where it says, at once."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"project moved to {message.get('url') or 'a master not known yet'}")
        self.url = message.get("url")
        self.masters = message.get("masters") or []


@dataclass(frozen=True)
class TrainerOptions:
    """How one trainer connection behaves; the last two are test knobs."""

    master_url: str
    project: str | None = None
    cache_dir: Path = DEFAULT_DIR
    slot: int = 0
    name: str = ""  # shown on the project's contributors table; credit goes to this machine's volunteer id
    batch_size: int = 32
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    extra_latency_ms: float = 0.0  # delay before each result: a far-away client
    slowdown: float = 1.0  # compute this many times slower: a slow CPU
    predict: bool = True  # also answer prediction chunks, between training results
    predict_only: bool = False  # role `predictor`: prediction chunks only, no training

    result_codecs: tuple[str, ...] = RESULT_CODECS  # offered in hello (docs/protocol.md, "Codecs")
    param_codecs: tuple[str, ...] = PARAM_CODECS


def volunteer_id(cache_dir: Path) -> str:
    """This machine's volunteer id, kept beside the shard cache so credit survives restarts."""
    path = Path(cache_dir) / "volunteer-id"
    try:
        return path.read_text().strip()
    except OSError:
        vid = f"py-{secrets.token_hex(8)}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(vid)
        return vid


def websocket_url(master_url: str) -> str:
    """`http://host:8000` → `ws://host:8000/ws` (https → wss); ws URLs pass through."""
    parts = urlsplit(master_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the master URL must start with http://, https://, ws:// or wss://, got {master_url!r}")
    path = parts.path if parts.path.endswith("/ws") else parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class Latest(Generic[T]):
    """A one-slot mailbox: a newer value replaces one not yet taken."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._ready = asyncio.Event()

    def put(self, value: T) -> None:
        self._value = value
        self._ready.set()

    async def get(self) -> T:
        await self._ready.wait()
        self._ready.clear()
        value, self._value = self._value, None
        return value  # type: ignore[return-value]


@dataclass
class Session:
    """What one connection learned from `welcome` and the frames after it."""

    ws: ClientConnection
    net: Net
    normalization: Normalization
    data_url: str
    cache: ShardCache
    link: LinkCodecs
    params: tuple[int, np.ndarray] | None = None
    assignments: Latest[list[str]] = field(default_factory=Latest)
    work: Latest[dict[str, Any]] = field(default_factory=Latest)
    predictions: PredictQueue = field(default_factory=PredictQueue)
    compute_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # training and prediction take turns


class Trainer:
    """A trainer that stays connected to the master until `stop` is set."""

    def __init__(
        self,
        options: TrainerOptions,
        report: Callable[[Progress], None],
        say: Callable[[str], None],
    ) -> None:
        self.options = options
        self.report = report
        self.say = say
        self.cache: ShardCache | None = None
        self.results = 0
        self.predicted = 0  # images classified for the master's prediction service
        self._jitter = random.Random()
        self._examples: tuple[tuple[str, ...], WorkExamples] | None = None
        self._seconds_per_example: float | None = None  # of the last work: sizes the next one's batches
        self._progress = Progress(slot=options.slot, state="connecting")
        self._welcomed = False  # set by a session that got `welcome`: the backoff starts over
        self.masters = MasterList(options.master_url)  # several masters: where to go next (masters.py)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, train, and reconnect with backoff until `stop` is set; FatalError if refused."""
        attempt = 0
        while not stop.is_set():
            self._welcomed = False
            try:
                await self._session(stop)
                reason = "the master closed the connection"
            except FatalError:
                raise
            except MovedError as moved:
                self.masters.moved(moved.url, moved.masters)
                self.say(f"trainer {self.options.slot}: {moved}; connecting to {self.masters.current}")
                if moved.url:
                    continue  # the owner is known: go there now (the shard cache stays, nothing is downloaded)
                reason = str(moved)
            except (OSError, TimeoutError, websockets.WebSocketException, ProtocolError) as exc:
                reason = f"connection lost ({type(exc).__name__}: {exc})"
                if not self._welcomed:
                    self.masters.failed()  # unreachable: the next attempt tries the next known master
            if stop.is_set():
                break
            attempt = 0 if self._welcomed else attempt + 1
            delay = full_jitter_s(attempt + 1, self.options.backoff_base_s, self.options.backoff_max_s, self._jitter)
            self.say(f"trainer {self.options.slot}: {reason}; retrying in {delay:.1f} s")
            self._set(state="connecting")
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass

    async def _session(self, stop: asyncio.Event) -> None:
        """One connection, from hello until the master goes away or `stop` is set."""
        self._set(state="connecting")
        async with websockets.connect(
            websocket_url(self.masters.current),
            max_size=MAX_FRAME_BYTES,
            compression=None,
            open_timeout=10,
            # A frozen master (SIGSTOP, a partition) keeps the socket open: pings notice it within 10 s,
            # and the worker fails over to another master (several masters, masters.py).
            ping_interval=5,
            ping_timeout=5,
        ) as ws:
            await ws.send(self._hello())
            welcome = decode(await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT_S), MAX_FRAME_BYTES)
            if welcome.get("type") == "moved":
                raise MovedError(welcome)
            self._check_error(welcome)
            if welcome["type"] != "welcome":
                raise ProtocolError("unexpected", f"expected welcome, got {welcome['type']!r}")
            session = self._start(ws, welcome)
            self._welcomed = True
            self.masters.learn(await asyncio.to_thread(fetch_masters, self.masters.current))
            self.say(f"trainer {self.options.slot}: joined project {welcome['project']['id']} as {welcome['client_id']}")
            if self.cache is not None and self.cache.ids():
                await ws.send(cached_frame(self.cache.ids()))
            tasks = [
                asyncio.create_task(self._receive(session)),
                asyncio.create_task(self._download_loop(session)),
                asyncio.create_task(self._compute_loop(session)),
                asyncio.create_task(predict_loop(ws, session.predictions, session.net, session.normalization,
                                                 session.compute_lock, self._predicted)),
                asyncio.create_task(stop.wait()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if stop.is_set():
                await ws.close(1000, "worker leaving")
                self.say(f"trainer {self.options.slot}: left")
                return
            for task in done:
                task.result()  # raise what ended the session

    def _hello(self) -> bytes:
        client = {
            "kind": "python",
            "engine": "numpy",
            "cores": os.cpu_count() or 1,
            "agent": f"mlitb-worker/{__version__} python/{platform.python_version()} {platform.system()}",
            "volunteer": volunteer_id(self.options.cache_dir),
            "name": self.options.name,
        }
        role = "predictor" if self.options.predict_only else "trainer"
        codecs = {"results": list(self.options.result_codecs), "params": list(self.options.param_codecs)}
        return hello_frame(role, self.options.project, client, self.cache.ids() if self.cache is not None else [],
                           predict=self.options.predict or self.options.predict_only, codecs=codecs)

    def _start(self, ws: ClientConnection, welcome: dict[str, Any]) -> Session:
        project, dataset, limits = welcome["project"], welcome["dataset"], welcome.get("limits", {})
        if self.cache is None or self.cache.dataset_id != dataset["id"]:
            self.cache = ShardCache(Path(self.options.cache_dir), dataset["id"], int(limits.get("cache_shards", 1000)))
            self._examples = None
        norm = project.get("normalization") or {}
        net = Net(project["layers"])
        return Session(
            ws=ws,
            net=net,
            normalization=Normalization(float(norm.get("scale", 1 / 255)), float(norm.get("offset", 0.0))),
            # A one-port master may give its data API as a path ("/data"): relative to the master's URL.
            data_url=urljoin(self.options.master_url.rstrip("/") + "/", dataset["url"]),
            cache=self.cache,
            link=LinkCodecs.from_welcome(welcome, net.param_count),
        )

    async def _receive(self, session: Session) -> None:
        """Read frames; never blocks on downloads or compute."""
        async for frame in session.ws:
            message = decode(frame, MAX_FRAME_BYTES)
            kind = message["type"]
            if kind == "params":
                # None when a delta's base is not what this worker holds: it skips that work (codecs.py).
                session.params = session.link.on_params(message)
            elif kind == "assign":
                session.assignments.put([s["id"] for s in message["shards"]])
            elif kind == "work":
                session.work.put(message)
            elif kind == "predict":
                problem = session.predictions.receive(message, session.net, session.params)
                if problem:
                    self.say(f"trainer {self.options.slot}: {problem}; skipped (the master sends it elsewhere)")
            elif kind == "idle":
                self._set(state=f"idle ({message.get('reason', '?')})")
            elif kind == "moved":  # the project left this master (hand-over, or it lost its lease)
                raise MovedError(message)
            elif kind == "error":
                self._check_error(message)
                self.say(f"trainer {self.options.slot}: master says {message.get('code')}: {message.get('message')}")

    async def _download_loop(self, session: Session) -> None:
        while True:
            shard_ids = await session.assignments.get()
            if any(session.cache.get(s) is None for s in shard_ids):
                self._set(state="downloading")
            failed = await session.cache.fetch(session.data_url, shard_ids)
            if failed:
                self.say(f"trainer {self.options.slot}: could not fetch {len(failed)} shard(s), e.g. {failed[0]}")
            await session.ws.send(cached_frame(session.cache.ids()))
            self._set(state="waiting", shards=len(shard_ids) - len(failed))

    async def _compute_loop(self, session: Session) -> None:
        while True:
            work = await session.work.get()
            iteration, budget_ms = int(work["iteration"]), int(work["budget_ms"])
            if session.params is None or session.params[0] != iteration:
                self.say(f"trainer {self.options.slot}: work for iteration {iteration} without its params; skipped")
                continue
            held = {s: session.cache.get(s) for s in work["shards"]}
            missing = [s for s, shard in held.items() if shard is None]
            if missing or not held:
                # The work's example order spans every listed shard (work_order.py): with one missing, no
                # honest result is possible; the next `cached` tells the master what this worker holds.
                self.say(f"trainer {self.options.slot}: {len(missing)} of the {len(work['shards'])} shards to "
                         f"train on are not cached; work skipped")
                continue
            shards = {s: shard for s, shard in held.items() if shard is not None}
            seed = int(work.get("seed", 0)) & 0xFFFFFFFF
            async with session.compute_lock:  # prediction chunks wait, and wait for us (worker/predict.py)
                started = time.perf_counter()
                result, steps = await asyncio.to_thread(self._compute, session, session.params[1], shards, budget_ms,
                                                        seed)
                compute_ms = (time.perf_counter() - started) * 1000.0
            codec, grad = session.link.encode_result(result.grad_sum)
            if self.options.extra_latency_ms > 0:
                await asyncio.sleep(self.options.extra_latency_ms / 1000.0)
            await session.ws.send(
                result_frame(iteration, grad, result.count, result.loss_sum, result.correct, compute_ms,
                             result.batches, codec=codec, steps=steps)
            )
            self.results += 1
            self._set(
                state="training",
                iteration=iteration,
                examples_per_s=result.count / max(result.compute_ms / 1000.0, 1e-6),
                loss=result.loss_sum / result.count,
                budget_ms=budget_ms,
                shards=len(shards),
                results=self.results,
            )

    def _compute(self, session: Session, params: np.ndarray, shards: dict[str, Shard], budget_ms: int,
                 seed: int) -> tuple[WorkResult, tuple[int, ...]]:
        """In a worker thread: the examples of these shards (built once per set), then the gradient, or with
        local steps (H > 1) the change of H local SGD steps, each on its share of the budget and on the
        example order of seed + h; returns the result and its batches per step (() for a gradient)."""
        started = time.perf_counter()
        shard_ids = tuple(shards)
        if self._examples is None or self._examples[0] != shard_ids:
            self._examples = (shard_ids, gather(list(shards.values())))
        budget = budget_ms - (time.perf_counter() - started) * 1000.0
        steps = session.link.chosen.local_steps

        def part(w: np.ndarray, h: int) -> WorkResult:
            share = budget / steps
            return compute(
                session.net.gradient, w, self._examples[1], share, session.normalization,
                seed=(seed + h) & 0xFFFFFFFF,
                batch_size=batch_size_for(share, self._seconds_per_example, self.options.batch_size,
                                          MIN_BATCH, BATCHES_PER_BUDGET),
                slowdown=self.options.slowdown,
            )

        if steps <= 1:
            result = part(params, 0)
            self._seconds_per_example = result.compute_ms / 1000.0 / result.count
            return result, ()
        parts: list[WorkResult] = []

        def local_part(w: np.ndarray, h: int) -> PartResult:
            r = part(w, h)
            parts.append(r)
            return PartResult(r.grad_sum, r.count, r.loss_sum, r.correct)

        local = run_local_steps(local_part, params, steps, session.link.chosen.local_learning_rate)
        compute_ms = sum(r.compute_ms for r in parts)
        self._seconds_per_example = compute_ms / 1000.0 / local.count
        batches = tuple(b for r in parts for b in r.batches)
        result = WorkResult(local.grad_sum, local.count, local.loss_sum, local.correct, compute_ms, batches)
        return result, tuple(len(r.batches) for r in parts)

    def _predicted(self, images: int) -> None:
        self.predicted += images
        self._set(state="predicting" if self.options.predict_only else self._progress.state)

    def _check_error(self, message: dict[str, Any]) -> None:
        if message.get("type") == "error" and message.get("code") in FATAL_CODES:
            raise FatalError(f"{message.get('code')}: {message.get('message')}")

    def _set(self, **changes: Any) -> None:
        self._progress = replace(self._progress, **{"results": self.results, **changes})
        self.report(self._progress)


def fetch_masters(master_url: str) -> list[str]:
    """The live masters' public URLs from `GET /api/masters` (empty when the master has none or is old)."""
    import json
    import urllib.request
    from http.client import HTTPException

    try:
        with urllib.request.urlopen(f"{master_url}/api/masters", timeout=3) as response:
            return [m["url"] for m in json.loads(response.read()) if isinstance(m, dict) and m.get("url")]
    except (OSError, HTTPException, ValueError, KeyError, TypeError):  # a master killed mid-answer included
        return []
