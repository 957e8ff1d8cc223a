"""The pages work under their Content-Security-Policy, in headless Chromium (a CSP violation is a console
error, and every test here asserts there is none): the volunteer page trains (module workers, the wasm
engine, shard downloads from the data server, the WebSocket), the researcher's pages load, and the
standalone closure page classifies when the master serves it with its own hash-based policy."""

from __future__ import annotations

import pytest
import pytest_asyncio
from playwright.async_api import Page

from tests.browser_support import classify_file, mnist_digits, new_context, open_page
from tests.helpers import until
from tests.master_support import TOKEN, copy_store, running_system

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def in_page(page: Page, function: str, arg: object = None, timeout: float = 60.0) -> None:
    """Poll a JS function in the page until it returns true (not `wait_for_function`: it needs eval)."""
    await until(lambda: page.evaluate(function, arg), timeout=timeout, what=function)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(mnist_dir, tmp_path_factory):
    async with running_system(copy_store(mnist_dir, tmp_path_factory.mktemp("csp") / "store")) as system:
        yield system


async def test_the_volunteer_page_trains_under_its_policy(system, browser):
    project = await system.create_project(iteration_ms=500)
    context = await new_context(browser, enforce_csp=True)
    volunteer = await open_page(context, f"{system.master_url}/?project={project['id']}")
    page = volunteer.page
    assert "script-src 'self' 'wasm-unsafe-eval'" in (await page.request.get(page.url)).headers["content-security-policy"]
    await in_page(page, "() => !document.getElementById('contribute').disabled")
    await page.fill("#trainers", "1")
    await page.click("#contribute")
    await in_page(page, "() => document.getElementById('state').textContent === 'training'")
    await in_page(page, """async (url) => {
        const project = await (await fetch(url)).json();  // the page's own origin, under connect-src
        return project.workers.some((w) => w.kind === "browser" && w.accepted >= 3);
    }""", f"/api/projects/{project['id']}")
    await page.click("#contribute")
    volunteer.assert_no_console_errors()
    await context.close()


async def test_the_researchers_pages_load_under_their_policy(system, browser):
    project = (await system.api.get("/api/projects")).json()[0]
    context = await new_context(browser, token=TOKEN, enforce_csp=True)
    for path, ready in ((f"/dashboard.html?project={project['id']}", "#project:not(.hidden)"),
                        ("/new.html", f'#dataset option[value="{system.dataset["id"]}"]'), ("/predict.html", "#load-live")):
        watched = await open_page(context, system.master_url + path)
        await watched.page.wait_for_selector(ready, state="attached")
        watched.assert_no_console_errors()
    await context.close()


async def test_the_closure_page_served_by_the_master_runs_under_its_own_policy(system, browser, tmp_path):
    project = (await system.api.get("/api/projects")).json()[0]
    context = await new_context(browser, enforce_csp=True)
    standalone = await open_page(context, f"{system.master_url}/api/projects/{project['id']}/closure.html")
    await standalone.page.wait_for_selector("#message[data-ready]")
    path, _label, _pixels = mnist_digits(tmp_path, 1)[0]
    assert await classify_file(standalone.page, path)  # the engine ran: bars for the classes
    standalone.assert_no_console_errors()
    await context.close()
