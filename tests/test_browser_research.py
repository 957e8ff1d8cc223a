"""The dashboard's research panel in headless Chromium: per-layer learning rates edited live, and
"verify this closure" answered by the master."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.browser_support import new_context, open_page
from tests.master_support import ADMIN, TOKEN, copy_store, running_system, trainer

pytestmark = pytest.mark.asyncio(loop_scope="module")

HIDDEN = [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
          {"type": "fc", "num_neurons": 12, "activation": "relu"},
          {"type": "softmax", "num_classes": 10}]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(mnist_dir, tmp_path_factory):
    async with running_system(copy_store(mnist_dir, tmp_path_factory.mktemp("research") / "store")) as system:
        yield system


async def test_freeze_a_layer_and_verify_the_closure_from_the_dashboard(system, browser):
    project = await system.create_project(layers=HIDDEN, iteration_ms=2000)
    pid = project["id"]
    async with trainer(system, pid) as client:
        for _ in range(2):
            await client.send(client.compute(await client.expect("work")))
        await client.expect("work")
    context = await new_context(browser, token=TOKEN)
    watched = await open_page(context, f"{system.master_url}/dashboard.html?project={pid}")
    page = watched.page
    await page.wait_for_selector("#layer-rates tbody tr[data-layer='2']")
    assert await page.locator("#layer-rates tbody tr").count() == 2  # the fc and the softmax: layers with parameters
    assert await page.evaluate("document.querySelector('#layer-rates tbody').childNodes.length") == 2, \
        "nothing but those rows (a layer without parameters once left the text 'null')"
    await page.fill("input[name=lr-1]", "0")
    await page.click("#layer-rates-form button[type=submit]")
    await page.wait_for_selector("#research-message.ok >> text=layer 1 × 0")
    assert (await system.api.get(f"/api/projects/{pid}")).json()["lr_multipliers"] == [1, 0, 1]
    await page.wait_for_selector("#layer-rates tr[data-layer='1'] >> text=frozen")

    await page.click("#verify")
    result = page.locator("#verify-result[data-ok=true]")
    await result.wait_for(timeout=180_000)  # a recomputation of the test figures: slow on a busy machine
    text = await result.inner_text()
    assert "REPRODUCED" in text and "recomputed" in text, text
    watched.assert_no_console_errors()
    await system.api.post(f"/api/projects/{pid}/pause", headers=ADMIN)
    await context.close()
