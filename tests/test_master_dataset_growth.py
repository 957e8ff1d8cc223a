"""A dataset that changes while a project trains (DESIGN.md loop step 1), with the real apps on uvicorn:
examples appended to the data server reach a trainer within a few iterations; a deleted dataset pauses
the project with an error in the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from tests.datazips import make_zip, png
from tests.master_support import (
    ADMIN,
    System,
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


def digits_zip(per_class: int) -> bytes:
    """New 28x28 greyscale examples in MNIST's class folders."""
    rng = np.random.default_rng(5)
    return make_zip({f"more/{label}/{i}.png": png(rng.integers(0, 256, (28, 28), dtype=np.uint8))
                     for label in range(10) for i in range(per_class)})


async def test_appended_shards_are_assigned_and_trained_on(system: System):
    project = await system.create_project(iteration_ms=1000)
    rt = system.runtime(project["id"])
    async with trainer(system, project["id"]) as client:
        work = await client.expect("work")
        await client.send(client.compute(work))
        response = await system.api.post(f"{system.data_url}/datasets/{system.dataset['id']}/examples",
                                         files={"zip": ("more.zip", digits_zip(30), "application/zip")}, headers=ADMIN)
        assert response.status_code == 200, response.text
        old = {ref["id"] for ref in system.dataset["splits"]["train"]["shards"]}
        new = {ref["id"] for ref in response.json()["splits"]["train"]["shards"]} - old
        assert len(new) == 2  # 300 examples in shards of 250
        # Work goes unanswered meanwhile, so each iteration lasts its full second (an answered one
        # closes at once) and counting them measures how fast the master noticed (poll: 0.1 s).
        iterations = 0
        while not new <= {ref["id"] for ref in client.assigned}:
            iterations += (await client.receive())["type"] == "work"
        assert iterations <= 2, f"the new shards took {iterations} iterations to be assigned"
        await client.fetch_and_cache()
        while True:
            work = await client.expect("work")
            if new <= set(work["shards"]):
                break
            await client.send(client.compute(work))
        accepted = rt.counters.accepted
        await client.send(client.compute(work, examples=10**6))  # every example of the work, the new shards included
        await client.expect("work")
        assert rt.counters.accepted == accepted + 1
    assert rt.allocation.shard_counts.keys() >= new and sum(rt.allocation.shard_counts.values()) == 8000 + 300


async def test_deleted_dataset_pauses_the_project_with_an_error(system: System):
    project = await system.create_project(iteration_ms=300)
    async with trainer(system, project["id"]) as client:
        await client.expect("work")
        response = await system.api.delete(f"{system.data_url}/datasets/{system.dataset['id']}", headers=ADMIN)
        assert response.status_code == 204
        while "paused" not in client.idle:
            await client.receive()
    view = (await system.api.get(f"/api/projects/{project['id']}")).json()
    assert view["status"] == "paused"
    assert "was deleted" in view["error"]["message"] and system.dataset["id"] in view["error"]["message"]
