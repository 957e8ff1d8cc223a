"""Hostile WebSocket clients never break the master (property-based, against a real master on uvicorn).

One master + data server runs for the whole module in a background thread with its own event loop,
with one project and two well-behaved clients inside that loop: a scripted trainer that answers every
`work` at once with a ZERO gradient, and a tracker that records every `params` frame. A zero gradient
leaves the parameters exactly as they are (AdaGrad moves by g/(sqrt(cache)+eps) = 0), so any change
of the parameters can only come from a hostile frame. Hypothesis drives synchronous hostile clients
from the test thread (random bytes, text, msgpack of random shapes, every message type with wrong
fields, oversized frames, frames after close) and, after every example, checks: every bad frame got an
`error` with a documented code (and a fatal one closed the connection), the parameters did not move,
the good trainer got more `work` and had more results accepted, and /healthz is 200.
Waiting is always on frames or on the good trainer's progress, with timeouts; never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from mlitb.protocol import encode, result_frame
from tests.helpers import poll_until
from tests.master_support import TINY_LAYERS, Trainer, copy_store, running_system

T_MS = 300
MAX_FRAME = 1 << 20  # the master's max_frame_bytes here (uvicorn's own limit is 16 MiB, above it)
MAX_BAD = 10  # Settings.max_bad_frames default
WAIT = 20.0
DOCUMENTED = {"bad_frame", "frame_too_large", "unknown_type", "bad_field", "bad_size", "bad_values",
              "protocol_version", "unknown_project", "unexpected", "too_many_errors", "too_many_connections",
              "too_slow"}
FATAL = {"frame_too_large", "protocol_version", "unknown_project", "too_many_errors", "too_many_connections",
         "too_slow"}
KNOWN_TYPES = ("hello", "cached", "result", "state")
P = 7850  # TINY_LAYERS (MNIST softmax)
BARRIER = encode({"type": "barrier"})  # unknown_type: every frame before it has been handled


# ------------------------------------------------------------------ the running system

class Live:
    """The master, data server, good trainer and tracker, in a thread of their own."""

    def __init__(self, store_dir: Path, tmp: Path) -> None:
        self.store_dir, self.tmp = store_dir, tmp
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.cond = threading.Condition()
        self.works = 0  # `work` frames the good trainer got (and answered)
        self.tracker_params = 0
        self.changed_params: list[int] = []  # iterations whose params differed from the first ones
        self.hostile_work: list[str] = []
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._thread, daemon=True)

    # -- thread side

    def _thread(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self.failure = exc
        finally:
            self.ready.set()
            with self.cond:
                self.cond.notify_all()

    async def _main(self) -> None:
        store = copy_store(self.store_dir, self.tmp / "store")
        # The good trainer answers with zero gradients and no data (a protocol-level client): spot checks off.
        async with running_system(store, max_frame_bytes=MAX_FRAME, min_iteration_ms=100, verify_queue=0) as system:
            self.system = system
            self.master_url = system.master_url
            self.ws_url = system.ws_url
            self.project = (await system.create_project(iteration_ms=T_MS))["id"]
            self.rt = system.runtime(self.project)
            self.initial = self.rt.params.tobytes()
            self.stop = asyncio.Event()
            from websockets.asyncio.client import connect as aconnect
            async with aconnect(system.ws_url, max_size=None) as gws, aconnect(system.ws_url, max_size=None) as tws:
                good, tracker = Trainer(gws, system.data_url), Trainer(tws, system.data_url)
                await good.hello(self.project)
                self.good_id = good.welcome["client_id"]
                await tracker.hello(self.project, role="tracker")
                tasks = [asyncio.create_task(self._good(good)), asyncio.create_task(self._track(tracker))]
                self.ready.set()
                stop = asyncio.create_task(self.stop.wait())
                done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
                # Closing the sockets ends both clients (a cancel can be swallowed by wait_for on 3.11).
                await gws.close()
                await tws.close()
                await asyncio.gather(*tasks, return_exceptions=True)
                for task in done:
                    if task is not stop:
                        task.result()  # a failing good client is the test's failure

    async def _good(self, good: Trainer) -> None:
        """Well-behaved: reports its whole assignment as cached, answers each work at once."""
        zero = np.zeros(P, np.float32)
        while True:
            message = await good.receive(timeout=WAIT)
            if message["type"] == "assign":
                await good.send({"type": "cached", "shards": [s["id"] for s in message["shards"]]})
            elif message["type"] == "work":
                await good.ws.send(result_frame(message["iteration"], zero, 64, 64 * 2.3, 6, 1.0))
                with self.cond:
                    self.works += 1
                    self.cond.notify_all()
            elif message["type"] == "error":
                raise AssertionError(f"the good trainer got an error: {message}")

    async def _track(self, tracker: Trainer) -> None:
        while True:
            message = await tracker.receive(timeout=WAIT)
            if message["type"] == "params":
                with self.cond:
                    self.tracker_params += 1
                    if message["params"] != self.initial:
                        self.changed_params.append(message["iteration"])
                    self.cond.notify_all()

    # -- test side

    def call(self, fn) -> Any:
        """Run `fn()` on the master's loop (its state is only touched there) and return its value."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(WAIT)

    def accepted(self) -> int:
        return self.call(lambda: self.rt.workers[self.good_id].accepted)

    def wait_works(self, count: int, timeout: float = WAIT) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: self.works >= count or self.failure is not None, timeout)
        assert self.failure is None, f"the running system failed: {self.failure!r}"
        assert ok, f"the good trainer got only {self.works} work frames of {count} within {timeout} s: the loop stalled"

    def check_healthy(self, works_before: int, accepted_before: int, new_works: int = 2) -> None:
        """The good trainer keeps getting work and its results keep counting; parameters never moved."""
        self.wait_works(works_before + new_works)
        assert self.accepted() >= accepted_before + new_works - 1, "the good trainer's results stopped being accepted"
        assert not self.changed_params, f"parameters changed at iterations {self.changed_params[:5]}"
        assert self.call(lambda: self.rt.params.tobytes()) == self.initial, "the project's parameters changed"
        assert httpx.get(f"{self.master_url}/healthz", timeout=WAIT).status_code == 200

    def snapshot(self) -> tuple[int, int]:
        with self.cond:
            works = self.works
        return works, self.accepted()


@pytest.fixture(scope="module")
def live(mnist_dir: Path, tmp_path_factory) -> Iterator[Live]:  # noqa: F811
    system = Live(mnist_dir, tmp_path_factory.mktemp("fuzz"))
    system.thread.start()
    assert system.ready.wait(120), "the master did not start"
    assert system.failure is None, repr(system.failure)
    system.wait_works(2)  # training runs before anything hostile happens
    yield system
    system.loop.call_soon_threadsafe(system.stop.set)
    system.thread.join(60)
    assert not system.thread.is_alive(), "the master did not shut down within 60 s"
    assert system.failure is None, repr(system.failure)
    # Over the whole module: the tracker kept getting params, which never changed.
    assert system.tracker_params > 10 and not system.changed_params


# ------------------------------------------------------------------ a hostile client

def dial(live: Live, **options: Any) -> ClientConnection:
    """A synchronous WebSocket client (close it with `ws.close()` or `contextlib.closing`)."""
    return connect(live.ws_url, max_size=None, open_timeout=WAIT, close_timeout=2, **options).__enter__()


def hostile(live: Live, helloed: bool, role: str = "trainer") -> ClientConnection:
    ws = dial(live)
    if helloed:
        ws.send(encode({"type": "hello", "protocol": 1, "role": role, "project": live.project,
                        "client": {"kind": "fuzz", "engine": "none", "cores": 1, "agent": "hypothesis"}}))
        assert next_frame(ws)["type"] == "welcome"
    return ws


def next_frame(ws: ClientConnection, timeout: float = WAIT) -> dict[str, Any]:
    raw = ws.recv(timeout=timeout)
    assert isinstance(raw, bytes), "the master sends binary frames only"
    return msgpack.unpackb(raw, raw=False)


def next_error(ws: ClientConnection, timeout: float = WAIT) -> dict[str, Any]:
    """The next `error`, skipping the ordinary frames an unadmitted client gets (never `work`)."""
    deadline = time.monotonic() + timeout
    while True:
        message = next_frame(ws, max(deadline - time.monotonic(), 0.001))
        if message["type"] == "error":
            assert set(message) == {"type", "code", "message", "fatal"}, message
            assert isinstance(message["message"], str) and isinstance(message["fatal"], bool), message
            return message
        assert message["type"] in ("welcome", "params", "assign", "idle"), f"unexpected frame {message['type']}"


def assert_closed(ws: ClientConnection) -> None:
    """After a fatal error the master closes: nothing but the close arrives, and sending fails."""
    with pytest.raises(ConnectionClosed):
        next_frame(ws)
    with pytest.raises(ConnectionClosed):
        ws.send(BARRIER)  # a frame after close
    with pytest.raises(ConnectionClosed):
        ws.send("text after close")


# ------------------------------------------------------------------ strategies

SILENT = "silent"  # a valid frame: no answer (an unsolicited result is dropped, a cached/state recorded)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.binary(max_size=32))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=12)
non_int = values.filter(lambda v: not isinstance(v, int) or isinstance(v, bool))
non_number = values.filter(lambda v: not isinstance(v, (int, float)) or isinstance(v, bool))
bad_number = st.one_of(non_number, st.sampled_from([float("nan"), float("inf"), float("-inf")]),
                       st.floats(max_value=-1e-6, allow_nan=False), st.integers(-(2**63), -1))


def typed_map(frame: bytes) -> bool:
    try:
        message = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception:  # noqa: BLE001
        return False
    return isinstance(message, dict) and isinstance(message.get("type"), str)


def packable(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


garbage = st.one_of(
    st.binary(max_size=300).filter(lambda b: not typed_map(b)),
    st.text(max_size=100),  # a text frame
    values.map(packable).filter(lambda b: not typed_map(b)),  # msgpack, not a map with a string type
    st.dictionaries(st.integers(0, 9), values, min_size=1, max_size=3).map(packable),  # non-string keys
    st.fixed_dictionaries({"type": non_int.filter(lambda v: not isinstance(v, str))}).map(packable),
    st.integers(1, 400).map(lambda depth: b"\x91" * depth + b"\xc0"),  # nested lists, deep
)


def grad_bytes(rng_seed: int, size: int = P, scale: float = 1e-3) -> bytes:
    return (np.random.default_rng(rng_seed).standard_normal(size) * scale).astype("<f4").tobytes()


@st.composite
def bad_grads(draw) -> Any:
    seed = draw(st.integers(0, 2**16))
    kind = draw(st.sampled_from(["length", "odd", "list", "nan", "inf", "norm", "junk", "missing"]))
    if kind == "length":
        return grad_bytes(seed, draw(st.integers(0, 2 * P).filter(lambda n: n != P)))
    if kind == "odd":
        return grad_bytes(seed)[: draw(st.integers(0, 4 * P - 1).filter(lambda n: n % 4))]
    if kind == "list":
        return [0.0] * draw(st.sampled_from([P, 3]))
    if kind in ("nan", "inf", "norm"):
        grad = np.frombuffer(grad_bytes(seed), "<f4").copy()
        grad[draw(st.integers(0, P - 1))] = {"nan": np.nan, "inf": -np.inf, "norm": 3e38}[kind]
        return grad.tobytes()
    if kind == "missing":
        return None
    return draw(values.filter(lambda v: not isinstance(v, bytes)))


def valid_result(seed: int, iteration: int) -> dict[str, Any]:
    return {"type": "result", "iteration": iteration, "grad": grad_bytes(seed), "count": 64,
            "loss_sum": 140.0, "correct": 9, "compute_ms": 12.0}


@st.composite
def bad_results(draw) -> dict[str, Any]:
    message = valid_result(draw(st.integers(0, 2**16)), draw(st.integers(0, 2**64 - 1)))
    corrupt = {
        "iteration": st.one_of(non_int, st.integers(-(2**63), -1)),
        "count": st.one_of(non_int, st.integers(-(2**63), 0)),
        "correct": st.one_of(non_int, st.integers(-(2**63), -1), st.integers(65, 2**64 - 1)),
        "loss_sum": bad_number,
        "compute_ms": bad_number,
        "grad": bad_grads(),
    }
    for name in draw(st.lists(st.sampled_from(sorted(corrupt)), min_size=1, max_size=3, unique=True)):
        value = draw(corrupt[name])
        if value is None and draw(st.booleans()):
            del message[name]
        else:
            message[name] = value
    message.update(draw(st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k not in message), values,
                                        max_size=2)))  # junk extra fields, ignored
    return message


bad_shard_lists = st.one_of(
    values.filter(lambda v: not isinstance(v, list)),
    st.lists(values, min_size=1, max_size=4).filter(lambda v: not all(isinstance(s, str) and 0 < len(s) <= 200 for s in v)),
    st.just([""]), st.just(["x" * 201]),
    st.just(["s"] * 100_001),  # an enormous shard list (one over the limit)
)
bad_cached = st.one_of(bad_shard_lists.map(lambda v: {"type": "cached", "shards": v}), st.just({"type": "cached"}))
bad_state = st.one_of(values.filter(lambda v: not isinstance(v, bool)).map(lambda v: {"type": "state", "hidden": v}),
                      st.just({"type": "state"}))


@st.composite
def bad_hellos(draw) -> dict[str, Any]:
    """A hello the parser refuses (protocol, role, project or client wrong): fatal."""
    message = {"type": "hello", "protocol": 1, "role": "trainer", "project": None, "client": {"kind": "x"}}
    field = draw(st.sampled_from(["protocol", "role", "project", "client"]))
    if field == "protocol":
        message["protocol"] = draw(values.filter(lambda v: v != 1))
    elif field == "role":
        message["role"] = draw(values.filter(lambda v: v not in ("trainer", "tracker")))
    elif field == "project":
        message["project"] = draw(st.one_of(values.filter(lambda v: v is not None and not isinstance(v, str)),
                                            st.just(""), st.just("p" * 201)))
    else:
        message["client"] = draw(values.filter(lambda v: bool(v) and not isinstance(v, dict)))
    return message


unknown_types = st.builds(lambda kind, extra: {**extra, "type": kind},
                          st.text(max_size=20).filter(lambda t: t not in KNOWN_TYPES),
                          st.dictionaries(st.text(max_size=6), values, max_size=3))
silent = st.one_of(
    st.builds(valid_result, st.integers(0, 2**16), st.integers(0, 2**64 - 1)),  # never given work: dropped
    st.lists(st.text(min_size=1, max_size=200), max_size=5).map(lambda s: {"type": "cached", "shards": s}),
    st.booleans().map(lambda h: {"type": "state", "hidden": h}),
)
unknown_project = st.text(min_size=1, max_size=200).filter(lambda p: not p.startswith("p-")).map(
    lambda p: {"type": "hello", "protocol": 1, "role": "trainer", "project": "zz" + p[:198], "client": {}})

# (frame, category)
frames = st.one_of(
    garbage.map(lambda f: (f, "garbage")),
    unknown_types.map(lambda m: (encode(m), "unknown")),
    bad_results().map(lambda m: (encode(m), "result")),
    bad_cached.map(lambda m: (encode(m), "field")),
    bad_state.map(lambda m: (encode(m), "field")),
    bad_hellos().map(lambda m: (encode(m), "hello")),
    unknown_project.map(lambda m: (encode(m), "project")),
    silent.map(lambda m: (encode(m), SILENT)),
    st.just((b"\x00" * (MAX_FRAME + 1), "large")),
)


def expected(category: str, helloed: bool) -> tuple[set[str], bool] | None:
    """The codes allowed for a frame and whether the error is fatal; None: no answer at all."""
    table = {
        "garbage": ({"bad_frame"}, False),
        "unknown": ({"unknown_type"}, False),
        "result": (({"bad_field", "bad_size", "bad_values"} if helloed else {"unexpected"}), False),
        "field": ({"bad_field"}, False),
        "hello": ({"protocol_version", "bad_field"}, True),
        "project": (({"unexpected"}, False) if helloed else ({"unknown_project"}, True)),
        "large": ({"frame_too_large"}, True),
    }
    if category == SILENT:
        return None if helloed else ({"unexpected"}, False)
    return table[category]


# ------------------------------------------------------------------ properties

@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          derandomize=False)
@given(helloed=st.booleans(), sequence=st.lists(frames, min_size=1, max_size=5))
def test_bad_frames_get_documented_errors_and_never_touch_the_model(live: Live, helloed: bool, sequence) -> None:
    works, accepted = live.snapshot()
    bad = 0
    with contextlib.closing(hostile(live, helloed)) as ws:
        for frame, category in sequence:
            ws.send(frame)
            answer = expected(category, helloed)
            if answer is None:
                ws.send(BARRIER)
                error = next_error(ws)
                assert error["code"] == "unknown_type", f"a valid {category} frame was answered with {error}"
                bad += 1
                continue
            codes, fatal = answer
            error = next_error(ws)
            bad += 1
            assert error["code"] in DOCUMENTED and error["code"] in codes, (category, error)
            assert error["fatal"] == fatal and (error["code"] not in FATAL or fatal), (category, error)
            if fatal:
                assert_closed(ws)
                break
        assert bad <= MAX_BAD  # never enough for too_many_errors: that is the next test's
    live.check_healthy(works, accepted)


def test_a_client_that_keeps_sending_bad_frames_is_dropped(live: Live) -> None:
    works, accepted = live.snapshot()
    dropped = live.call(lambda: live.system.app.state.stats.dropped)
    with contextlib.closing(hostile(live, helloed=True)) as ws:
        for _ in range(MAX_BAD):
            ws.send(BARRIER)
            error = next_error(ws)
            assert (error["code"], error["fatal"]) == ("unknown_type", False)
        ws.send(encode({"type": "result", "iteration": 0, "grad": b"\x00" * 12, "count": 1, "loss_sum": 0.0,
                        "correct": 0, "compute_ms": 0.0}))
        error = next_error(ws)
        assert (error["code"], error["fatal"]) == ("too_many_errors", True)
        assert_closed(ws)
    assert live.call(lambda: live.system.app.state.stats.dropped) == dropped + 1
    live.check_healthy(works, accepted)


def test_silent_and_unreading_clients_do_not_hold_the_loop_back(live: Live) -> None:
    """A TCP connection with no handshake, a WebSocket that never says hello, a tracker and an admitted
    trainer that never read (nor answer their work): the good trainer keeps training at the deadline pace."""
    works, accepted = live.snapshot()
    raw = socket.create_connection(("127.0.0.1", int(live.master_url.rsplit(":", 1)[1])), timeout=WAIT)
    mute = dial(live)
    deaf_tracker = hostile(live, helloed=True, role="tracker")
    deaf = dial(live, max_queue=1)
    try:
        deaf.send(encode({"type": "hello", "protocol": 1, "role": "trainer", "project": live.project, "client": {}}))
        deaf_id = None
        while (message := next_frame(deaf))["type"] != "assign":
            deaf_id = message["client_id"] if message["type"] == "welcome" else deaf_id
        # Claims its shards without downloading them: admitted at the next boundary, then never reads again.
        deaf.send(encode({"type": "cached", "shards": [s["id"] for s in message["shards"]]}))
        # The deaf trainer is admitted, misses its deadlines and is excluded (or dropped as too slow), however
        # many iterations that takes on a loaded machine; meanwhile the good trainer trains on.
        assert deaf_id is not None
        poll_until(lambda: live.call(lambda: live.rt.workers[deaf_id].state if deaf_id in live.rt.workers else "gone")
                   in ("excluded", "gone"), timeout=120, what="the deaf trainer is excluded")
        live.check_healthy(works, accepted, new_works=12)
        assert httpx.get(f"{live.master_url}/healthz", timeout=WAIT).json()["ok"] is True
    finally:
        raw.close()
        for ws in (mute, deaf_tracker, deaf):
            ws.close()
    works, accepted = live.snapshot()
    live.check_healthy(works, accepted)


def test_extreme_but_valid_results_from_an_admitted_trainer_do_not_stop_the_loop(live: Live) -> None:
    """Results that pass validation with extreme numbers (count 2^64-1, loss_sum 1.7e308, compute_ms 0 or
    1e308), a zero gradient: a count beyond the work's examples is proof of a lie, so each such client is
    excluded (`untrusted`) at its first result, and the loop, the API and /metrics keep working."""
    works, accepted = live.snapshot()
    clients = [dial(live) for _ in range(2)]
    try:
        for ws in clients:
            ws.send(encode({"type": "hello", "protocol": 1, "role": "trainer", "project": live.project, "client": {}}))
            while (message := next_frame(ws))["type"] != "assign":
                pass
            ws.send(encode({"type": "cached", "shards": [s["id"] for s in message["shards"]]}))
        answered, excluded = 0, set()
        deadline = time.monotonic() + WAIT
        while len(excluded) < len(clients) and time.monotonic() < deadline:
            for index, ws in enumerate(clients):
                if index in excluded:
                    continue
                with contextlib.suppress(TimeoutError):
                    message = next_frame(ws, timeout=0.05)
                    if message["type"] == "error":
                        assert message["code"] == "untrusted" and "implausible_count" in message["message"], message
                        excluded.add(index)
                    elif message["type"] == "work":
                        ws.send(encode({"type": "result", "iteration": message["iteration"], "grad": bytes(4 * P),
                                        "count": 2**64 - 1, "loss_sum": 1.7e308, "correct": 2**64 - 1,
                                        "compute_ms": [0.0, 1e308][index]}))
                        answered += 1
        assert answered >= 2, "the extreme trainers were never given work"
        assert excluded == {0, 1}, "an impossible count excludes its client"
        live.check_healthy(works, accepted, new_works=4)
        for path in ("/metrics", f"/api/projects/{live.project}", f"/api/projects/{live.project}/metrics"):
            assert httpx.get(live.master_url + path, timeout=WAIT).status_code == 200, path
    finally:
        for ws in clients:
            ws.close()


def test_a_hello_with_a_bad_cached_list_is_fatal(live: Live) -> None:
    """docs/protocol.md: `bad_field` is fatal in `hello`; that includes its optional `cached` list."""
    with contextlib.closing(hostile(live, helloed=False)) as ws:
        ws.send(encode({"type": "hello", "protocol": 1, "role": "trainer", "project": live.project, "client": {},
                        "cached": "not-a-list"}))
        error = next_error(ws)
        assert error["code"] == "bad_field"
        assert error["fatal"] is True, f"a bad hello was answered with a non-fatal error: {error}"
        assert_closed(ws)


def test_a_lone_trainer_that_is_excluded_still_gets_probe_work(live: Live) -> None:
    """docs/protocol.md `idle excluded`: "keep the connection, work returns when you catch up". A project
    whose only trainer misses 3 deadlines (here: never answers) excludes it; the probe `work` must still
    come every few iterations, or the trainer can never catch up and the project stops training."""
    from tests.master_support import ADMIN
    body = {"name": "lone", "dataset": live.system.dataset["id"], "layers": TINY_LAYERS, "iteration_ms": 150,
            "optimizer": {"name": "adagrad", "learning_rate": 0.01}, "status": "running"}
    response = httpx.post(f"{live.master_url}/api/projects", json=body, headers=ADMIN, timeout=WAIT)
    assert response.status_code == 201, response.text
    project = response.json()["id"]
    try:
        with contextlib.closing(dial(live)) as ws:
            ws.send(encode({"type": "hello", "protocol": 1, "role": "trainer", "project": project, "client": {}}))
            while (message := next_frame(ws))["type"] != "assign":
                pass
            ws.send(encode({"type": "cached", "shards": [s["id"] for s in message["shards"]]}))
            works, excluded = [], False
            deadline = time.monotonic() + 10
            while len(works) < 5 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    message = next_frame(ws, timeout=max(deadline - time.monotonic(), 0.001))
                    if message["type"] == "work":
                        works.append(message["iteration"])  # never answered
                    excluded = excluded or message == {"type": "idle", "reason": "excluded"}
            assert excluded, f"never excluded after {len(works)} unanswered works"
            assert len(works) >= 5, f"only works {works} in 10 s: after the exclusion no probe came, the project stalled"
    finally:
        httpx.delete(f"{live.master_url}/api/projects/{project}", headers=ADMIN, timeout=WAIT)
