"""A volunteer's tab follows its project to another master when the owner is killed, downloading nothing again.

Real processes: a private redis-server, 2 `mlitb serve` masters in cluster mode
(each page's CSP admits the other master, MLITB_MASTER_URLS), headless Chromium
with one browser trainer on the owner's page. kill -9 of the owner: the tab's
socket fails, it tries the other master it learned from `GET /api/masters`,
which takes the project over within the lease and accepts its results; the
page is never reloaded and its shard counters show no new download.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio

from tests.browser_support import chromium, new_context, open_page
from tests.cluster_system import ClusterSystem
from tests.helpers import poll_until
from tests.redis_process import redis_process

pytestmark = pytest.mark.asyncio(loop_scope="module")

ITERATION_MS = 400
N = 5


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    async with chromium() as browser:
        yield browser


@pytest.fixture
def system(tmp_path: Path):
    with redis_process(persist=True) as server:
        running = ClusterSystem(tmp_path, server.url, count=2, checkpoint_every=N)
        try:
            running.start()
            yield running
        finally:
            running.close()
            print(running.logs())


def browser_accepted(system: ClusterSystem, master, project_id: str) -> int:
    project = system.project_on(master, project_id)
    return sum(w["accepted"] for w in project.get("workers", []) if w["kind"] == "browser")


async def poll(condition, *, timeout: float, what: str):
    return await asyncio.to_thread(poll_until, condition, timeout=timeout, what=what)


async def test_a_tab_follows_its_project_to_the_next_master_after_kill_9(system: ClusterSystem, browser):
    owner, other = system.masters
    project_id = system.create_project(owner, iteration_ms=ITERATION_MS, optimizer={"name": "adam", "learning_rate": 0.002},
                                       eval_every=N)
    context = await new_context(browser)
    try:
        volunteer = await open_page(context, f"{owner.url}/?project={project_id}")
        page = volunteer.page
        await page.wait_for_function("!document.getElementById('contribute').disabled")
        await page.fill("#trainers", "1")
        await page.click("#contribute")
        await page.wait_for_function("document.getElementById('state').dataset.state === 'training'", timeout=60_000)
        await poll(lambda: browser_accepted(system, owner, project_id) >= 3, timeout=120,
                   what="3 browser results accepted by the owner")
        await page.wait_for_function("document.getElementById('data-line').dataset.downloading === '0'")
        downloaded = int(await page.locator("#data-line").get_attribute("data-downloaded"))
        assert downloaded > 0

        owner.proc.kill()
        owner.proc.wait(timeout=30)
        await poll(lambda: system.owner(project_id)[0] == other.id, timeout=30, what="the other master taking over")
        await poll(lambda: browser_accepted(system, other, project_id) >= 3, timeout=120,
                   what="3 browser results accepted by the new owner from the same tab")
        assert int(await page.locator("#data-line").get_attribute("data-downloaded")) == downloaded, \
            "shards were downloaded again after the move"
        unexpected = [e for e in volunteer.errors if "ERR_CONNECTION_REFUSED" not in e]
        assert not unexpected, "console errors:\n" + "\n".join(unexpected)
    finally:
        await context.close()
