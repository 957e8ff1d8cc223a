"""The event loop through real WebSocket clients: join, work, reduce, drops, churn, pause, live changes."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from mlitb.closure import load_closure
from mlitb.data.shards import decode_shard
from mlitb.model import Net
from mlitb.protocol import encode
from mlitb.store import FileStore
from tests.master_support import ADMIN, Trainer, copy_store, running_system, trainer


async def test_a_trainer_trains(system):
    project = await system.create_project()
    async with trainer(system, project["id"]) as client:
        assert client.welcome["project"]["param_count"] == 7850
        assert client.welcome["dataset"]["url"] == system.data_url
        assert client.welcome["client_id"]
        assert len(client.assigned) == len(system.dataset["splits"]["train"]["shards"])
        work = await client.expect("work")
        assert set(work["shards"]) <= set(client.shards) and work["shards"]
        assert 0 < work["budget_ms"] < 2000
        before = client.params[work["iteration"]].copy()
        await client.send(client.compute(work))
        following = await client.expect("work")
        assert following["iteration"] == work["iteration"] + 1
        after = client.params[following["iteration"]]
        assert not np.array_equal(before, after)
    record = (await system.api.get(f"/api/projects/{project['id']}/metrics")).json()[0]
    assert record["iteration"] == work["iteration"] and record["workers"] == 1
    assert record["train_loss"] > 0 and 0 <= record["train_accuracy"] <= 1
    assert await system.metric("mlitb_results_accepted_total", f'project="{project["id"]}"') == 1


async def test_a_tracker_gets_the_same_params_bytes(system):
    project = await system.create_project()
    async with trainer(system, project["id"]) as client, connect(system.ws_url) as ws:
        tracker = Trainer(ws, system.data_url)
        welcome = await tracker.hello(project["id"], role="tracker")
        assert welcome["role"] == "tracker" and welcome["dataset"]["test"]
        work = await client.expect("work")
        await client.send(client.compute(work))
        following = await client.expect("work")
        while following["iteration"] not in tracker.params:
            await tracker.expect("params")
        assert np.array_equal(tracker.params[following["iteration"]], client.params[following["iteration"]])
        assert (await system.api.get(f"/api/projects/{project['id']}")).json()["trackers"] == 1


async def test_bad_frames_get_errors_and_never_touch_the_params(system):
    project = await system.create_project(iteration_ms=1000)
    async with trainer(system, project["id"]) as client:
        work = await client.expect("work")
        k, size = work["iteration"], 7850
        before = client.params[k].copy()
        good = {"type": "result", "iteration": k, "count": 10, "loss_sum": 1.0, "correct": 1, "compute_ms": 1.0}
        bad = [
            (b"\xc1 not msgpack", "bad_frame"),
            ("a text frame", "bad_frame"),
            (encode({"type": "shout"}), "unknown_type"),
            (encode({**good, "grad": np.zeros(size - 1, "<f4").tobytes()}), "bad_size"),
            (encode({**good, "grad": np.full(size, np.nan, "<f4").tobytes()}), "bad_values"),
            (encode({**good, "grad": np.full(size, 1e9, "<f4").tobytes()}), "bad_values"),
            (encode({**good, "grad": np.zeros(size, "<f4").tobytes(), "count": 0}), "bad_field"),
            (encode({"type": "hello", "protocol": 1, "role": "trainer", "project": None}), "unexpected"),
        ]
        for frame, code in bad:
            await client.send(frame)
            error = await client.expect("error")
            assert (error["code"], error["fatal"]) == (code, False), error
        following = await client.expect("work")
        assert np.array_equal(client.params[following["iteration"]], before)
    assert await system.metric("mlitb_bad_frames_total", "") == len(bad)


async def test_a_client_that_keeps_sending_bad_frames_is_dropped(system):
    project = await system.create_project()
    async with trainer(system, project["id"], cache=False) as client:
        for _ in range(11):
            await client.send(b"\xc1")
        while not client.errors or client.errors[-1]["code"] != "too_many_errors":
            await client.expect("error")
        assert client.errors[-1]["fatal"]
        with pytest.raises(ConnectionClosed):
            while True:
                await client.receive()
    assert await system.metric("mlitb_clients_dropped_total", "") == 1
    assert (await system.api.get(f"/api/projects/{project['id']}")).json()["trainers"] == 0


async def test_fatal_errors_close_the_connection(system):
    async with connect(system.ws_url) as ws:
        client = Trainer(ws, system.data_url)
        await client.send({"type": "hello", "protocol": 1, "role": "trainer", "project": "nope"})
        error = await client.expect("error")
        assert (error["code"], error["fatal"]) == ("unknown_project", True)
        with pytest.raises(ConnectionClosed):
            await client.receive()


async def test_old_results_are_dropped_and_counted(system):
    project = await system.create_project(iteration_ms=1000)
    labels = f'project="{project["id"]}",reason="old"'
    async with trainer(system, project["id"]) as client:
        first = await client.expect("work")
        stale = client.compute(first)
        second = await client.expect("work")  # the first iteration closed at its deadline without a result
        before = client.params[second["iteration"]].copy()
        assert np.array_equal(before, client.params[first["iteration"]])
        await client.send(stale)
        await client.send(client.compute(second))
        third = await client.expect("work")
        assert third["iteration"] == second["iteration"] + 1
    assert await system.metric("mlitb_results_dropped_total", labels) == 1
    assert await system.metric("mlitb_results_missed_total", f'project="{project["id"]}"') >= 1
    records = (await system.api.get(f"/api/projects/{project['id']}/metrics?since={second['iteration']}")).json()
    assert records[0]["iteration"] == second["iteration"] and records[0]["workers"] == 1


@contextlib.asynccontextmanager
async def two_trainers(system, project_id: str):
    """Trainers a and b, both given work for the same iteration (a's first answer admits b)."""
    async with trainer(system, project_id) as a:
        alone = await a.expect("work")
        async with trainer(system, project_id) as b:
            await b.barrier()  # b's `cached` is in: it is admitted at the next boundary
            await a.send(a.compute(alone))
            wa, wb = await a.expect("work"), await b.expect("work")
            assert wa["iteration"] == wb["iteration"] == alone["iteration"] + 1
            yield a, b, wa, wb


async def test_two_trainers_both_contribute(system):
    project = await system.create_project(iteration_ms=20_000)
    async with two_trainers(system, project["id"]) as (a, b, wa, wb):
        await a.send(a.compute(wa))
        await b.send(b.compute(wb))
        await a.expect("work")
        await b.expect("work")  # both have read this boundary's assignments (throughput may have moved shards)
        assert not {s["id"] for s in a.assigned} & {s["id"] for s in b.assigned}
        assert len(a.assigned) + len(b.assigned) == len(system.dataset["splits"]["train"]["shards"])
        detail = (await system.api.get(f"/api/projects/{project['id']}")).json()
    record = next(r for r in (await system.api.get(f"/api/projects/{project['id']}/metrics")).json()
                  if r["iteration"] == wa["iteration"])
    assert record["workers"] == 2
    assert {w["state"] for w in detail["workers"]} == {"training"}
    assert all(w["shards_allocated"] > 0 for w in detail["workers"])


async def test_a_trainer_leaving_mid_iteration_does_not_stall_the_loop(system):
    project = await system.create_project(iteration_ms=20_000)
    async with two_trainers(system, project["id"]) as (a, b, wa, _wb):
        b.ws.transport.abort()  # as if killed: no close handshake
        # b left holding work for this iteration; a's answer must close it long before its 20 s deadline.
        await a.send(a.compute(wa))
        async with asyncio.timeout(5):
            following = await a.expect("work")
        assert following["iteration"] == wa["iteration"] + 1
        while len(a.assigned) < len(system.dataset["splits"]["train"]["shards"]):
            await a.expect("assign")


async def test_pause_stops_work_and_start_resumes_it(system):
    project = await system.create_project()
    pid = project["id"]
    async with trainer(system, pid) as client:
        work = await client.expect("work")
        await client.send(client.compute(work))
        current = await client.expect("work")
        paused = await system.api.post(f"/api/projects/{pid}/pause", headers=ADMIN)
        assert paused.json()["status"] == "paused"
        runtime = system.runtime(pid)
        assert runtime.task is None and runtime.window is None
        while "paused" not in client.idle:
            await client.expect("idle")
        await client.send(client.compute(current))  # answers an iteration that was called off
        assert (await system.api.get(f"/api/projects/{pid}")).json()["iteration"] == current["iteration"]
        await system.api.post(f"/api/projects/{pid}/start", headers=ADMIN)
        resumed = await client.expect("work")
        assert resumed["iteration"] == current["iteration"]
        assert np.array_equal(client.params[resumed["iteration"]], client.params[current["iteration"]])
    assert await system.metric("mlitb_results_dropped_total", f'project="{pid}",reason="old"') == 1


async def test_patching_the_learning_rate_changes_the_next_step(system):
    project = await system.create_project()
    async with trainer(system, project["id"]) as client:
        work = await client.expect("work")
        response = await system.api.patch(f"/api/projects/{project['id']}", json={"optimizer": {"learning_rate": 0.5}},
                                          headers=ADMIN)
        assert response.json()["optimizer"]["learning_rate"] == 0.5
        before = client.params[work["iteration"]].copy()
        await client.send(client.compute(work))
        following = await client.expect("work")
    # AdaGrad's first step moves every weight with a gradient by learning_rate * g / |g| = learning_rate.
    step = np.abs(client.params[following["iteration"]] - before)
    assert step.max() == pytest.approx(0.5, rel=1e-3)


async def test_closure_download_and_resume_from_it(system):
    project = await system.create_project()
    pid = project["id"]
    async with trainer(system, pid) as client:
        for _ in range(3):
            await client.send(client.compute(await client.expect("work")))
        assert (await client.expect("work"))["iteration"] == 3
        await system.api.post(f"/api/projects/{pid}/pause", headers=ADMIN)
    runtime = system.runtime(pid)
    response = await system.api.get(f"/api/projects/{pid}/closure")
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    closure = load_closure(response.text)
    assert closure.training.iteration == runtime.iteration == 3
    assert np.array_equal(closure.params, runtime.params)
    assert closure.classes == system.dataset["classes"] and len(closure.metrics) == 3
    page = await system.api.get(f"/api/projects/{pid}/closure.html")
    assert page.status_code == 200 and "<html" in page.text.lower()

    assert (await system.api.post("/api/projects/from-closure", content=response.content)).status_code == 401
    broken = await system.api.post("/api/projects/from-closure", content=response.text.replace('"classes"', '"klasses"'),
                                   headers=ADMIN)
    assert broken.status_code == 400 and broken.json()["field"] == "klasses"
    created = await system.api.post("/api/projects/from-closure", content=response.content, headers=ADMIN)
    assert created.status_code == 201, created.text
    resumed = created.json()
    assert resumed["iteration"] == 3 and resumed["status"] == "paused" and resumed["id"] != pid
    assert resumed["optimizer"] == project["optimizer"]
    await system.api.post(f"/api/projects/{resumed['id']}/start", headers=ADMIN)
    async with trainer(system, resumed["id"]) as client:
        work = await client.expect("work")
        assert work["iteration"] == 3
        assert np.array_equal(client.params[3], closure.params)
    copy = system.runtime(resumed["id"])
    assert np.array_equal(copy.optimizer.state_dict()["gsum"], runtime.optimizer.state_dict()["gsum"])


async def test_a_restarted_master_resumes_its_projects(mnist_dir, tmp_path):
    root = tmp_path / "store"
    async with running_system(copy_store(mnist_dir, root)) as system:
        project = await system.create_project()
        async with trainer(system, project["id"]) as client:
            for _ in range(2):
                await client.send(client.compute(await client.expect("work")))
        before = system.runtime(project["id"])
    # The first master has shut down: its last state is the one the checkpoint must hold.
    assert before.iteration >= 2
    async with running_system(FileStore(root)) as system:
        detail = (await system.api.get(f"/api/projects/{project['id']}")).json()
        assert detail["status"] == "running" and detail["iteration"] == before.iteration
        metrics = (await system.api.get(f"/api/projects/{project['id']}/metrics")).json()
        assert [m["iteration"] for m in metrics] == [m["iteration"] for m in before.metrics]
        async with trainer(system, project["id"]) as client:
            work = await client.expect("work")
            assert work["iteration"] == before.iteration
            assert np.array_equal(client.params[work["iteration"]], before.params)


async def test_server_side_evaluation(system):
    project = await system.create_project(eval_every=2)
    pid = project["id"]
    async with trainer(system, pid) as client:
        for _ in range(2):
            await client.send(client.compute(await client.expect("work")))
        assert (await client.expect("work"))["iteration"] == 2
        rt = system.runtime(pid)
        params = rt.params.copy()
        await system.app.state.registry.settle(rt)
        records = (await system.api.get(f"/api/projects/{pid}/metrics")).json()
    assert [r["test_accuracy"] is None for r in records] == [True, False]
    # The master's figure is the numpy engine on the whole test split with the params after iteration 1.
    x, labels = [], []
    for ref in system.dataset["splits"]["test"]["shards"]:
        shard = decode_shard(await system.store.get(f"shards/{ref['id']}"))
        x.append(shard.pixels.astype(np.float32) / 255)
        labels.append(shard.labels)
    probs = Net(project["layers"]).predict(params, np.concatenate(x))
    expected = float((probs.argmax(axis=1) == np.concatenate(labels)).mean())
    assert records[1]["test_accuracy"] == pytest.approx(expected)
    assert records[1]["test_loss"] > 0


async def test_deleting_a_project_disconnects_its_clients(system):
    project = await system.create_project()
    async with trainer(system, project["id"]) as client:
        await client.expect("work")
        assert (await system.api.delete(f"/api/projects/{project['id']}", headers=ADMIN)).status_code == 204
        error = await client.expect("error")
        assert (error["code"], error["fatal"]) == ("unknown_project", True)
        with pytest.raises(ConnectionClosed):
            while True:
                await client.receive()


async def test_the_connection_limit_refuses_with_a_clear_error(mnist_dir, tmp_path):
    async with running_system(copy_store(mnist_dir, tmp_path / "store"), max_connections=1) as system:
        project = await system.create_project()
        async with trainer(system, project["id"], cache=False):
            async with connect(system.ws_url) as ws:
                refused = Trainer(ws, system.data_url)
                error = await refused.expect("error")
                assert (error["code"], error["fatal"]) == ("too_many_connections", True)
                with pytest.raises(ConnectionClosed):
                    await refused.receive()
        assert await system.metric("mlitb_connections_refused_total", "") == 1
