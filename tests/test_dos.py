"""No unauthenticated request can stall the master or exhaust its memory (issue 10, item 6).

Every test runs a real master and data server on uvicorn, hardened as `mlitb serve` runs them,
and attacks them over real loopback sockets at the byte level (tests/raw_clients.py): bodies
declared or streamed past their limit, stalled bodies and trickled headers, oversized WebSocket
frames before and after `welcome`, absurd models. Assertions are on what was refused, with which
status and error, what the connection did afterwards, and the master's memory; never on time.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys

import httpx
import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from mlitb.protocol import encode
from tests.helpers import REPO
from tests.master_support import ADMIN, TINY_LAYERS, Trainer, copy_store, running_system
from tests.raw_clients import (
    chunked_head_and,
    closed_by_server,
    masked_frame,
    oversized_ws_frame,
    peak_rss,
    post_streamed,
    read_answer,
    request_head,
    reset_peak_rss,
)

BODY = 64 << 10  # max_body_bytes here
CLOSURE = 1 << 20  # max_closure_bytes here
CONTROL = 16 << 10  # max_control_bytes here: TINY_LAYERS' result (31 KB) needs a trainer's limit
P = 7850
LIMITS = dict(max_body_bytes=BODY, max_closure_bytes=CLOSURE, max_control_bytes=CONTROL, http_read_timeout_s=0.5,
              hello_timeout_s=1.0, max_layers=20, max_params=1_000_000, max_projects=2, min_iteration_ms=100)
HEALTHY = {"content-security-policy", "x-content-type-options", "referrer-policy"}


@pytest.fixture
async def hardened(mnist_dir, tmp_path):  # noqa: F811
    async with running_system(copy_store(mnist_dir, tmp_path / "store"), **LIMITS) as system:
        yield system


def _fc(neurons: int) -> list[dict]:
    return [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1}, {"type": "fc", "num_neurons": neurons},
            {"type": "softmax", "num_classes": 10}]


# ------------------------------------------------------------------ HTTP bodies

async def test_a_declared_body_over_the_limit_is_refused_before_a_byte_of_it_is_sent(hardened):
    reader, writer = await request_head(hardened.master_url, "POST", "/api/layers/check",
                                        {"Content-Length": str(10**9), "Content-Type": "application/json"})
    answer = await asyncio.wait_for(read_answer(reader), 15)  # no body byte was sent: the headers decided
    assert answer.status == 413
    assert "MLITB_MAX_BODY_BYTES" in json.loads(answer.body)["error"]
    assert HEALTHY <= set(answer.headers)
    assert await asyncio.wait_for(closed_by_server(reader), 15), "the rest of the body must never be read"
    writer.close()


async def test_a_chunked_body_is_counted_while_it_streams(hardened):
    answer, closed = await chunked_head_and(hardened.master_url, "/api/layers/check", BODY + 1)
    assert answer.status == 413, answer  # answered although the body never ended
    assert closed
    small, closed = await chunked_head_and(hardened.master_url, "/api/layers/check", 100)
    assert small.status == 408 and closed  # under the limit the body is waited for, until it stalls


async def test_a_stalled_body_gets_408_and_a_closed_connection(hardened):
    reader, writer = await request_head(hardened.master_url, "POST", "/api/layers/check",
                                        {"Content-Length": "100", "Content-Type": "application/json"})
    writer.write(b'{"layers": ')
    await writer.drain()
    answer = await asyncio.wait_for(read_answer(reader), 15)
    assert answer.status == 408 and "MLITB_HTTP_READ_TIMEOUT_S" in answer.body.decode()
    assert await asyncio.wait_for(closed_by_server(reader), 15)
    writer.close()


async def test_uploads_keep_their_own_larger_limits(hardened):
    master, data = hardened.master_url, hardened.data_url
    closure = b"x" * (BODY * 4)  # over the API limit, under the closure limit: read, then refused as JSON
    answer = await hardened.api.post("/api/projects/from-closure", content=closure, headers=ADMIN)
    assert answer.status_code == 400 and "closure" in answer.json()["error"]
    reader, writer = await request_head(master, "POST", "/api/projects/from-closure",
                                        {"Content-Length": str(CLOSURE + 1), **ADMIN})
    assert (await asyncio.wait_for(read_answer(reader), 15)).status == 413
    writer.close()
    # The data server (default limits): an upload of 2 MiB is read (and refused as no zip), any other body is not.
    async with httpx.AsyncClient(base_url=data, timeout=30) as client:
        upload = await client.post("/datasets", files={"train": ("a.zip", b"x" * (2 << 20))}, headers=ADMIN)
        assert upload.status_code == 400 and "zip" in upload.json()["error"]
    reader, writer = await request_head(data, "DELETE", "/datasets/nothing", {"Content-Length": str(2 << 20), **ADMIN})
    refused = await asyncio.wait_for(read_answer(reader), 15)
    assert refused.status == 413 and HEALTHY <= set(refused.headers)
    writer.close()


# ------------------------------------------------------------------ slow-loris, idle sockets

async def test_headers_sent_a_byte_at_a_time_are_cut_off(hardened):
    reader, writer = await asyncio.open_connection("127.0.0.1", int(hardened.master_url.rsplit(":", 1)[1]))
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    closed = False
    for byte in request:  # bounded: the master must hang up long before the end
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if reader.at_eof():
            closed = True
            break
        try:
            data = await asyncio.wait_for(reader.read(1 << 16), 0.01)
        except TimeoutError:
            continue
        assert data.startswith(b"HTTP/1.1 408") or data == b"", data
        closed = True
        break
    assert closed, "a connection that never completes its headers must be closed"
    writer.close()


async def test_a_socket_that_sends_nothing_is_closed(hardened):
    reader, writer = await asyncio.open_connection("127.0.0.1", int(hardened.master_url.rsplit(":", 1)[1]))
    data = await asyncio.wait_for(reader.read(), 15)  # EOF after the 408
    assert data.startswith(b"HTTP/1.1 408")
    writer.close()


# ------------------------------------------------------------------ models and projects

async def test_model_limits_are_checked_before_anything_is_allocated(hardened):
    too_many = [_fc(10)[0], *({"type": "relu"} for _ in range(1_000)), _fc(10)[2]]
    answer = await hardened.api.post("/api/layers/check", json={"layers": too_many})
    assert answer.status_code == 400 and "MLITB_MAX_LAYERS" in answer.json()["error"]
    huge = await hardened.api.post("/api/layers/check", json={"layers": _fc(1_000_000_000)})  # 795e9 parameters
    assert huge.status_code == 400 and "MLITB_MAX_PARAMS" in huge.json()["error"]
    assert "795,000,000,010" in huge.json()["error"]  # exact arithmetic: no int64 wrap-around
    absurd = await hardened.api.post("/api/layers/check", json={"layers": _fc(2**62)})
    assert absurd.status_code == 400 and "MLITB_MAX_PARAMS" in absurd.json()["error"]
    create = await hardened.api.post("/api/projects", headers=ADMIN, json={
        "name": "huge", "dataset": hardened.dataset["id"], "layers": _fc(2_000), "status": "running"})
    assert create.status_code == 400 and create.json()["field"] == "layers" and "MLITB_MAX_PARAMS" in create.json()["error"]
    nested = b'{"layers": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    deep = await hardened.api.post("/api/layers/check", content=nested)
    assert deep.status_code == 400, deep.text
    assert (await hardened.api.post("/api/layers/check", json={"layers": _fc(100)})).json()["param_count"] == 79_510


async def test_the_number_of_projects_is_capped(hardened):
    for _ in range(LIMITS["max_projects"]):
        await hardened.create_project()
    refused = await hardened.api.post("/api/projects", headers=ADMIN, json={
        "name": "one more", "dataset": hardened.dataset["id"], "layers": TINY_LAYERS})
    assert refused.status_code == 409 and "MLITB_MAX_PROJECTS" in refused.json()["error"]
    assert len((await hardened.api.get("/api/projects")).json()) == LIMITS["max_projects"]


def test_only_training_processes_tune_the_allocator():
    """Net no longer calls mallopt for the whole process: the master builds nets and must keep its memory small."""
    script = ("from mlitb.model import Net; from mlitb.model.zoo import MNIST_CONVNET; "
              "from mlitb.model.memory import retain_freed_memory as r; "
              "Net(MNIST_CONVNET); print(r.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "0"


# ------------------------------------------------------------------ WebSocket

async def test_before_welcome_messages_are_small_and_refused_from_their_header(hardened):
    refusal = await oversized_ws_frame(hardened.ws_url, declared=8 << 20)
    assert refusal.error is not None and refusal.error["code"] == "frame_too_large" and refusal.error["fatal"]
    assert f"limit of {CONTROL} bytes" in refusal.error["message"]
    assert refusal.close_code == 1009
    assert refusal.sent < 8 << 20, "the master must stop the frame at its header"
    assert await hardened.metric("mlitb_frames_too_large_total", "") == 1


async def test_a_trainer_may_send_its_result_and_a_tracker_may_not(hardened):
    project = await hardened.create_project(iteration_ms=500)
    async with connect(hardened.ws_url, max_size=None) as ws:
        client = Trainer(ws, hardened.data_url)
        await client.hello(project["id"])
        await client.fetch_and_cache(limit=1)
        work = await client.expect("work")
        while work["iteration"] not in client.params:
            work = await client.expect("work")
        result = client.compute(work)
        assert len(result) > CONTROL  # 4 x 7850 bytes of gradient
        await client.send(result)
        await client.barrier()  # the master read the result and the frame after it: still connected
        assert not [e for e in client.errors if e["code"] == "frame_too_large"]
    async with connect(hardened.ws_url, max_size=None) as ws:
        tracker = Trainer(ws, hardened.data_url)
        await tracker.hello(project["id"], role="tracker")
        await tracker.send(encode({"type": "state", "hidden": False, "pad": b"\0" * CONTROL}))
        error = await tracker.expect("error")
        assert error["code"] == "frame_too_large" and error["fatal"]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_a_socket_that_never_says_hello_is_closed(hardened):
    async with connect(hardened.ws_url, max_size=None) as ws:
        error = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 15), raw=False)
        assert error["code"] == "hello_timeout" and error["fatal"]
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 15)


async def test_eight_floods_of_oversized_frames_do_not_grow_the_master(hardened):
    """The issue's measurement: 8 connections x garbage frames cost +525 MiB. Each declares 12 MiB here,
    under uvicorn's own 16 MiB ceiling and Settings' 64 MiB, so only the per-state limit stops them."""
    project = await hardened.create_project()
    hello = masked_frame(encode({"type": "hello", "protocol": 1, "role": "trainer", "project": project["id"]}))
    baseline = reset_peak_rss()
    for _round in range(3):
        refusals = await asyncio.gather(*(
            oversized_ws_frame(hardened.ws_url, declared=12 << 20, prefix=hello if i % 2 else b"") for i in range(8)))
        assert all(r.error is not None and r.error["code"] == "frame_too_large" for r in refusals), refusals
        assert all(r.close_code == 1009 for r in refusals)
    growth = peak_rss() - baseline
    assert growth < 32 << 20, f"the master grew by {growth >> 20} MiB under 24 refused 12 MiB frames"
    assert hardened.app.state.stats.too_large == 24
    assert (await hardened.api.get("/healthz")).status_code == 200


# ------------------------------------------------------------------ headers

async def test_every_page_and_answer_carries_the_security_headers(hardened):
    pages = [p.name for p in (REPO / "mlitb" / "static").glob("*.html")]
    paths = ["/", *(f"/{p}" for p in pages), "/api/config", "/api/projects", "/healthz", "/metrics",
             "/js/boss.js", "/api/projects/nope", "/nothing-here"]
    for path in paths:
        answer = await hardened.api.get(path)
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
        assert hardened.data_url in policy  # the pages fetch shards from the data server
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] in ("no-referrer", "same-origin"), path
    async with httpx.AsyncClient(base_url=hardened.data_url) as data:
        for path in ("/datasets", "/healthz", f"/datasets/{hardened.dataset['id']}", "/datasets/nope"):
            answer = await data.get(path)
            assert answer.headers["content-security-policy"].startswith("default-src 'none'"), path
            assert answer.headers["x-content-type-options"] == "nosniff"
        cors = await data.get("/datasets", headers={"Origin": "http://elsewhere.example"})
        assert cors.headers["access-control-allow-origin"] == "*"  # CORS stays as it was


def test_no_page_has_inline_script():
    for page in (REPO / "mlitb" / "static").glob("*.html"):
        text = page.read_text()
        for tag in text.split("<script")[1:]:
            opening, _, rest = tag.partition(">")
            assert "src=" in opening and rest.startswith("</script>"), f"{page.name} has an inline script"
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", text), f"{page.name} has an inline event handler"


async def test_the_closure_page_allows_exactly_its_own_inline_scripts(hardened):
    project = await hardened.create_project()
    answer = await hardened.api.get(f"/api/projects/{project['id']}/closure.html")
    policy = answer.headers["content-security-policy"]
    assert policy.count("'sha256-") == 2 and "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy.split("style-src")[0]
    from mlitb.master.closure_page import closure_page_policy
    assert closure_page_policy(answer.text) == policy
    assert closure_page_policy(answer.text.replace("import ", "import  ", 1)) != policy


# ------------------------------------------------------------------ /healthz under every flood

async def test_healthz_answers_while_every_heavy_request_is_refused(hardened):
    """Bounded flood, all at once: bodies over the limit (declared and chunked), 1M-layer and
    795e9-parameter models, oversized WebSocket frames; /healthz is polled throughout."""
    project = await hardened.create_project()
    million = b'{"layers": [' + b'{"type": "relu"},' * 1_000_000 + b'{"type": "softmax", "num_classes": 2}]}'
    statuses: list[int] = []
    health: list[int] = []
    done = asyncio.Event()

    async def poll_health() -> None:
        async with httpx.AsyncClient(base_url=hardened.master_url, timeout=30) as api:
            while not done.is_set() or not health:
                health.append((await api.get("/healthz")).status_code)

    async def heavy(i: int) -> None:
        async with httpx.AsyncClient(base_url=hardened.master_url, timeout=30) as api:
            kind = i % 4
            if kind == 0:
                statuses.append((await post_streamed(hardened.master_url, "/api/layers/check", million)).status)
            elif kind == 1:
                statuses.append((await api.post("/api/layers/check", json={"layers": _fc(1_000_000_000)})).status_code)
            elif kind == 2:
                answer, _ = await chunked_head_and(hardened.master_url, "/api/layers/check", BODY * 2)
                statuses.append(answer.status)
            else:
                refusal = await oversized_ws_frame(hardened.ws_url, declared=12 << 20)
                statuses.append(413 if refusal.error and refusal.error["code"] == "frame_too_large" else 0)

    baseline = reset_peak_rss()
    poller = asyncio.create_task(poll_health())
    await asyncio.gather(*(heavy(i) for i in range(24)))
    done.set()
    await poller
    assert sorted(set(statuses)) == [400, 413], statuses  # every heavy request was refused
    assert statuses.count(400) == 6
    assert health and set(health) == {200}
    growth = peak_rss() - baseline
    assert growth < 64 << 20, f"the master grew by {growth >> 20} MiB under the flood"
    assert (await hardened.api.get(f"/api/projects/{project['id']}")).status_code == 200
