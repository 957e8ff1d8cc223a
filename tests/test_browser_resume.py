"""A volunteer's browser survives a master restart without a reload.

A real `mlitb serve` (file store, free ports) trains with one browser trainer
in headless Chromium. The master is SIGKILLed mid-training: the volunteer page
says it is reconnecting; the master is started again on the same ports and
data directory: the same page (never reloaded) reconnects by itself, says
`hello` with the shards it holds, downloads nothing again and goes on
contributing, as the restarted master's HTTP API shows. Then a reload trains
from the browser's IndexedDB cache, downloading nothing.

Waits are on conditions (the DOM through Playwright, the API through
`poll_until`), bounded by iteration counts; the time limits are only a guard.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import pytest_asyncio

from tests.browser_support import chromium, new_context, open_page
from tests.helpers import poll_until
from tests.stored_system import TINY_LAYERS, StoredSystem

pytestmark = pytest.mark.asyncio(loop_scope="module")

ITERATION_MS = 400
N = 5  # checkpoint every N iterations
ACCEPTED_BEFORE_KILL = 5
ACCEPTED_AFTER_RESTART = 5
OPTIMIZER = {"name": "adam", "learning_rate": 0.002}
# Chromium's own line for each refused WebSocket connection while the master is down; nothing else is allowed.
PAGE_ACCEPTED = "Number(document.getElementById('accepted').textContent.replace(/,/g, ''))"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    async with chromium() as browser:
        yield browser


@pytest.fixture
def stored(tmp_path: Path):
    running = StoredSystem(tmp_path, checkpoint_every=N)
    try:
        running.start()
        yield running
    finally:
        running.close()
        print(running.logs())


def browser_accepted(system: StoredSystem, project_id: str) -> int:
    """Results accepted from browser trainers, as the running master reports them."""
    return sum(w["accepted"] for w in system.project(project_id)["workers"] if w["kind"] == "browser")


async def poll(condition, *, timeout: float, what: str):
    return await asyncio.to_thread(poll_until, condition, timeout=timeout, what=what)


async def cached_datasets(page, system: StoredSystem) -> list[str]:
    """The datasets of the shards in this browser's IndexedDB cache."""
    return await page.evaluate(f"""async () => {{
        const cache = await (await import('{system.url}/js/shard-cache.js')).openShardCache();
        return [...new Set((await cache.entries()).map((e) => e.dataset))].sort();
    }}""")


async def figure(page, element_id: str, attribute: str) -> int:
    return int(await page.locator(f"#{element_id}").get_attribute(f"data-{attribute}"))


async def test_a_volunteer_keeps_training_across_a_master_restart(stored: StoredSystem, browser):
    project_id = stored.create_project(layers=TINY_LAYERS, iteration_ms=ITERATION_MS, optimizer=OPTIMIZER, eval_every=N)
    context = await new_context(browser)
    try:
        volunteer = await open_page(context, f"{stored.url}/?project={project_id}")
        page = volunteer.page
        await page.wait_for_function("!document.getElementById('contribute').disabled")
        await page.fill("#trainers", "1")
        await page.click("#contribute")
        await page.wait_for_function("document.getElementById('state').dataset.state === 'training'", timeout=60_000)
        await poll(lambda: browser_accepted(stored, project_id) >= ACCEPTED_BEFORE_KILL, timeout=120,
                   what=f"{ACCEPTED_BEFORE_KILL} browser results accepted")
        # every assigned shard is held before the kill, so that nothing after it is a first download
        await page.wait_for_function("document.getElementById('data-line').dataset.downloading === '0'")
        await page.wait_for_function(f"{PAGE_ACCEPTED} > 0")
        downloaded_before = await figure(page, "data-line", "downloaded")
        assert downloaded_before > 0
        assert await figure(page, "cache-size", "bytes") > 0

        stored.kill_server()
        await page.wait_for_function("document.getElementById('state').dataset.state === 'reconnecting'",
                                     timeout=30_000)
        assert await page.locator("#state").inner_text() == "reconnecting…"
        connection = page.locator("#connection")
        assert await connection.is_visible()
        assert "master is unreachable" in await connection.inner_text()

        await asyncio.to_thread(stored.start)
        back = time.monotonic()
        await poll(lambda: browser_accepted(stored, project_id) >= 1, timeout=120,
                   what="the restarted master accepts a browser result")
        first_result_s = time.monotonic() - back
        await poll(lambda: browser_accepted(stored, project_id) >= ACCEPTED_AFTER_RESTART, timeout=120,
                   what=f"{ACCEPTED_AFTER_RESTART} browser results accepted by the restarted master")
        await page.wait_for_function("document.getElementById('state').dataset.state === 'training'")
        assert not await connection.is_visible()
        # the page adds up both connections' accepted results: more than the restarted master's count alone
        await page.wait_for_function(f"{PAGE_ACCEPTED} > {browser_accepted(stored, project_id)}")
        downloaded_after = await figure(page, "data-line", "downloaded")
        reconnects = await figure(page, "state", "reconnects")
        page_accepted = int((await page.locator("#accepted").inner_text()).replace(",", ""))
        print(f"\nmaster back: first browser result accepted {first_result_s:.2f} s later; shards downloaded "
              f"{downloaded_before} before the kill, {downloaded_after - downloaded_before} after; "
              f"{reconnects} reconnect(s); page shows {page_accepted} accepted")
        assert downloaded_after == downloaded_before, "shards were downloaded again after the restart"
        assert reconnects >= 1
        workers = [w for w in stored.project(project_id)["workers"] if w["kind"] == "browser"]
        assert len(workers) == 1 and workers[0]["shards_cached"] == workers[0]["shards_allocated"] > 0, workers

        # A reload trains from the IndexedDB cache: nothing downloaded.
        await page.click("#contribute")
        await page.wait_for_function("document.getElementById('state').dataset.state === 'stopped'")
        await page.reload()
        await page.wait_for_function("!document.getElementById('contribute').disabled")
        await page.fill("#trainers", "1")
        await page.click("#contribute")
        await page.wait_for_function("document.getElementById('state').dataset.state === 'training'", timeout=60_000)
        assert await figure(page, "data-line", "downloaded") == 0
        assert await figure(page, "data-line", "from-cache") > 0
        await page.click("#contribute")
        await page.wait_for_function("document.getElementById('state').dataset.state === 'stopped'")

        unexpected = volunteer.errors_besides_killed(stored.port, stored.data_port)
        print(f"console: {len(volunteer.errors) - len(unexpected)} refused or reset request(s) to the killed master")
        assert not unexpected, "console errors:\n" + "\n".join(unexpected)
    finally:
        await context.close()


async def test_a_data_server_that_fails_is_retried_with_a_visible_message(stored: StoredSystem, browser):
    project_id = stored.create_project(layers=TINY_LAYERS, iteration_ms=ITERATION_MS, optimizer=OPTIMIZER, eval_every=N)
    context = await new_context(browser)
    refused = []

    async def data_server_down(route):
        if len(refused) < 6:  # the first downloads fail as if the data server were unreachable
            refused.append(route.request.url)
            await route.abort("connectionrefused")
        else:
            await route.continue_()

    await context.route(f"http://127.0.0.1:{stored.data_port}/datasets/*/shards/*", data_server_down)
    try:
        volunteer = await open_page(context, f"{stored.url}/?project={project_id}")
        page = volunteer.page
        await page.wait_for_function("!document.getElementById('contribute').disabled")
        # a shard of a dataset the data server no longer has, cached by an earlier visit
        await page.evaluate(f"""async () => {{
            const cache = await (await import('{stored.url}/js/shard-cache.js')).openShardCache();
            await cache.put({{id: 'gone-shard', dataset: 'gone-dataset', pixels: new Uint8Array(784), labels: new Uint8Array(1)}});
        }}""")
        assert await cached_datasets(page, stored) == ["gone-dataset"]
        await page.fill("#trainers", "1")
        await page.click("#contribute")
        await page.wait_for_function("document.getElementById('connection').dataset.dataError === 'true'")
        message = await page.locator("#connection").inner_text()
        assert "data server is unreachable" in message and "retrying in" in message, message
        await page.wait_for_function("document.getElementById('state').dataset.state === 'training'", timeout=120_000)
        await poll(lambda: browser_accepted(stored, project_id) >= 3, timeout=120, what="browser results accepted")
        await page.wait_for_function("document.getElementById('connection').dataset.dataError === 'false'")
        assert len(refused) == 6
        assert "gone-dataset" not in await cached_datasets(page, stored), "the gone dataset's shard is still cached"
        print(f"\n{len(refused)} shard downloads refused, retried; page said: {message!r}")
        await page.click("#contribute")
        await page.wait_for_function("document.getElementById('state').dataset.state === 'stopped'")
        # Chromium logs each aborted request of the page's own (none here: the downloads run in a worker)
        volunteer.assert_no_console_errors()
    finally:
        await context.close()
