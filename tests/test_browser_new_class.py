"""A new class grows a running project while a browser volunteer trains it (issue 15): the browser's
trainer is told to reconnect, rebuilds its net from the new `welcome` and trains the grown net."""

from __future__ import annotations

import numpy as np
import pytest
import pytest_asyncio

from tests.browser_support import new_context, open_page
from tests.datazips import make_zip, png
from tests.helpers import until
from tests.master_support import ADMIN, TINY_LAYERS, copy_store, running_system

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(mnist_dir, tmp_path_factory):
    store = copy_store(mnist_dir, tmp_path_factory.mktemp("new-class") / "store")
    async with running_system(store, dataset_poll_s=0.2) as system:
        yield system


async def test_a_browser_volunteer_follows_a_growing_net(system, browser):
    body = {"name": "grow", "dataset": system.dataset["id"], "layers": TINY_LAYERS, "iteration_ms": 500,
            "optimizer": {"name": "adam", "learning_rate": 0.003}, "status": "running"}
    project = (await system.api.post("/api/projects", json=body, headers=ADMIN)).json()
    pid = project["id"]
    context = await new_context(browser)
    volunteer = await open_page(context, f"{system.master_url}/?project={pid}")
    page = volunteer.page
    await page.wait_for_function("!document.getElementById('contribute').disabled")
    await page.fill("#trainers", "1")
    await page.click("#contribute")

    async def browsers(min_accepted: int) -> list[dict]:
        workers = (await system.api.get(f"/api/projects/{pid}")).json()["workers"]
        return [w for w in workers if w["kind"] == "browser" and w["accepted"] >= min_accepted]

    first = []

    async def trains() -> bool:
        first[:] = await browsers(2)
        return bool(first)

    await until(trains, timeout=120, what="the browser trains")
    rng = np.random.default_rng(4)
    upload = make_zip({f"new/star/{i}.png": png(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for i in range(20)})
    response = await system.api.post(f"{system.data_url}/datasets/{system.dataset['id']}/examples",
                                     files={"zip": ("star.zip", upload, "application/zip")},
                                     params={"new_classes": "1"}, headers=ADMIN)
    assert response.status_code == 200, response.text

    async def grown_and_trained() -> bool:
        shown = (await system.api.get(f"/api/projects/{pid}")).json()
        again = [w for w in await browsers(2) if w["id"] != first[0]["id"]]
        return shown["param_count"] == project["param_count"] + 785 and bool(again)

    await until(grown_and_trained, timeout=120, what="the net grows and the browser trains it again")
    await page.click("#contribute")  # stop
    await system.api.post(f"/api/projects/{pid}/pause", headers=ADMIN)
    await context.close()
