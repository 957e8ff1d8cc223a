"""The dashboard shows each worker's trust record, bans a client, and changes the aggregation rule."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.browser_support import eventually, new_context, open_page
from tests.master_support import TOKEN, copy_store, running_system, trainer

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(mnist_dir, tmp_path_factory):
    async with running_system(copy_store(mnist_dir, tmp_path_factory.mktemp("trust") / "store")) as system:
        yield system


async def test_the_dashboard_shows_trust_bans_a_client_and_sets_the_aggregation(system, browser):
    project = await system.create_project(iteration_ms=60_000)
    context = await new_context(browser, token=TOKEN)
    try:
        async with trainer(system, project["id"]) as client:
            await client.send(client.compute(await client.expect("work")))
            await client.expect("work")
            page = await open_page(context, f"{system.master_url}/dashboard.html?project={project['id']}")
            # The one accepted result was sampled (a new client's first five all are) and recomputed.
            # The verifier is a niced process that a busy machine starves: its first check can take long.
            await eventually(lambda: system.runtime(project["id"]).counters.checks["passed"] == 1, timeout=180,
                             what="the spot check of the first result")
            await page.page.locator("#workers tbody td.trust", has_text="1 checks ok").wait_for(timeout=30_000)

            await page.page.select_option("#hyper select[name=aggregation]", "trimmed_mean")
            await page.page.click("#hyper button[type=submit]")
            await eventually(lambda: system.runtime(project["id"]).definition.aggregation == "trimmed_mean",
                             timeout=30, what="the PATCHed aggregation")

            await page.page.click("#workers tbody button:text('Ban')")
            error = await client.expect("error")
            assert error["code"] == "untrusted" and error["fatal"] and "banned" in error["message"]
            detail = (await system.api.get(f"/api/projects/{project['id']}")).json()
            assert detail["trust"]["banned"] == [client.welcome["client_id"]]
            page.assert_no_console_errors()
    finally:
        await context.close()
