"""A new class grows a running project's net (issue 15), with the real apps on uvicorn and scripted trainers:
an appended example with a new label adds an output at the next boundary, clients are told to reconnect
and get the new layout, the old parameters and optimizer state are kept, old results are refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from mlitb.closure import load_closure
from mlitb.export import to_convnetjs
from mlitb.master.closure_verify import verify_with_server
from mlitb.model import Net
from mlitb.protocol import result_frame
from tests.datazips import make_zip, png
from tests.master_support import (
    ADMIN,
    TINY_LAYERS,
    System,
    Trainer,
    copy_store,
    mnist_store_dir,
    running_system,
    trainer,
)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    return mnist_store_dir(tmp_path_factory)


@pytest.fixture
async def system(mnist_dir: Path, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(copy_store(mnist_dir, tmp_path / "store"), dataset_poll_s=0.1) as running:
        yield running


def new_class_zip(label: str, count: int) -> bytes:
    rng = np.random.default_rng(11)
    return make_zip({f"more/{label}/{i}.png": png(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for i in range(count)})


async def add_class(system: System, label: str, count: int = 20, **params) -> dict:
    response = await system.api.post(f"{system.data_url}/datasets/{system.dataset['id']}/examples",
                                     files={"zip": ("more.zip", new_class_zip(label, count), "application/zip")},
                                     params={"new_classes": "1", **params}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def until_closed(client: Trainer) -> list[dict]:
    """Every frame until the master closes the connection."""
    frames = []
    try:
        async with asyncio.timeout(30):
            while True:
                frames.append(msgpack.unpackb(await client.ws.recv(), raw=False))
    except ConnectionClosed:
        return frames


async def test_a_new_label_grows_the_running_net_and_clients_get_the_new_layout(system: System):
    project = await system.create_project(iteration_ms=300, optimizer={"name": "adam", "learning_rate": 0.01})
    pid = project["id"]
    rt = system.runtime(pid)
    async with trainer(system, pid) as client:
        for _ in range(2):
            await client.send(client.compute(await client.expect("work")))
        old_work = await client.expect("work")  # left unanswered: the growth follows its iteration
        before_params, before_state = client.params[old_work["iteration"]].copy(), rt.optimizer.state_dict()
        grown = await add_class(system, "ten")
        assert grown["classes"][-1] == "ten" and len(grown["classes"]) == 11
        frames = await until_closed(client)
    reconnect = [f for f in frames if f["type"] == "error"]
    assert reconnect and reconnect[-1]["code"] == "reconnect" and not reconnect[-1]["fatal"]
    assert "11 classes (new: ten)" in reconnect[-1]["message"]

    old_net, new_net = Net(TINY_LAYERS), Net(rt.definition.layers)
    assert new_net.num_classes == 11 and rt.param_count == old_net.param_count + 785
    w = old_net.layout[-2]
    assert rt.steps == 2
    kept = rt.params[:w.offset + w.size]  # the ten old rows of weights are untouched, then the new row
    assert np.array_equal(kept, before_params[:w.offset + w.size])
    assert np.array_equal(rt.params[-11:-1], before_params[-10:]) and rt.params[-1] == 0  # biases; the new one 0
    new_row = rt.params[w.offset + w.size:w.offset + w.size + 784]
    assert 0.5 / 28 < new_row.std() < 2 / 28  # drawn like the others: std sqrt(1/784)
    assert rt.class_since[:10] == [0] * 10 and rt.class_since[10] >= old_work["iteration"]
    state = rt.optimizer.state_dict()
    assert np.array_equal(state["m"][w.offset + w.size:w.offset + w.size + 784], np.zeros(784, np.float32))
    assert state["t"][0] == before_state["t"][0] == 2
    assert np.array_equal(state["m"][:w.offset + w.size], before_state["m"][:w.offset + w.size])
    shown = (await system.api.get(f"/api/projects/{pid}")).json()
    assert shown["param_count"] == new_net.param_count and shown["layers"][-1]["num_classes"] == 11

    async with connect(system.ws_url, max_size=None) as ws:  # a client coming back gets the new layout
        client = Trainer(ws, system.data_url)
        welcome = await client.hello(pid)
        assert welcome["project"]["param_count"] == new_net.param_count and welcome["project"]["num_classes"] == 11
        assert welcome["dataset"]["classes"][-1] == "ten"
        await client.fetch_and_cache()
        work = await client.expect("work")
        assert client.params[work["iteration"]].size == new_net.param_count
        dropped_before = rt.counters.dropped["old"]
        # a result for the iteration before the growth
        await client.send(result_frame(old_work["iteration"], np.zeros(new_net.param_count, np.float32), 1, 0.5, 0, 1.0))
        await client.send(client.compute(work))
        await client.barrier()
        assert rt.counters.dropped["old"] == dropped_before + 1
        following = await client.expect("work")
        assert following["iteration"] > work["iteration"]

    closure = load_closure((await system.api.get(f"/api/projects/{pid}/closure")).text)
    assert closure.classes[-1] == "ten" and closure.training.class_since[10] == rt.class_since[10] > 0
    per_class = closure.metrics[-1]["test_class_accuracy"]  # the test split has no example of the new class
    assert len(per_class) == 11 and per_class[10] is None and all(0 <= a <= 1 for a in per_class[:10])
    assert (await asyncio.to_thread(verify_with_server, closure, system.data_url)).ok
    exported = to_convnetjs(closure)  # the ConvNetJS export follows: its softmax has the new output
    assert exported["layers"][-1]["out_depth"] == 11 and exported["layers"][-2]["out_depth"] == 11
