"""The event loop through real WebSocket clients: join, work, reduce, drops, churn, pause, live changes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from mlitb.protocol import encode, result_frame
from tests.master_support import ADMIN, copy_store, mnist_store_dir, running_system, trainer


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    return mnist_store_dir(tmp_path_factory)


@pytest.fixture
async def system(mnist_dir, tmp_path):
    async with running_system(copy_store(mnist_dir, tmp_path / "store")) as system:
        yield system


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
