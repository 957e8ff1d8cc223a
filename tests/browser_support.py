"""What the browser tests share: Debian's Chromium driven by Playwright, pages that
record console errors and long main-thread tasks, MNIST digits as PNG files."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest_asyncio
from PIL import Image
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.helpers import DATASETS, REPO

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "docs" / "img"
VIEWPORT = {"width": 1280, "height": 900}

# Long tasks (> 50 ms) on the main thread, recorded from the first script on.
WATCH_LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push({start: entry.startTime, duration: entry.duration});
}).observe({type: "longtask", buffered: true});
"""


@contextlib.asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    """Debian's Chromium; extra_args e.g. --enable-unsafe-webgpu (SwiftShader WebGPU, no GPU needed)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for a test module (a fixture for the modules that import it)."""
    async with chromium() as running:
        yield running


@dataclass
class WatchedPage:
    """A page whose console errors and uncaught exceptions are kept for the test to assert on."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def assert_no_console_errors(self, refused: str | None = None) -> None:
        """None at all, except the browser's own log line for a 4xx the test provoked from the `refused` URL."""
        unexpected = [e for e in self.errors
                      if not (refused and "the server responded with a status of 4" in e and refused in e)]
        assert not unexpected, "console errors:\n" + "\n".join(unexpected)

    def errors_besides_killed(self, *ports: int) -> list[str]:
        """The errors that killing the servers on `ports` does not explain. The browser logs every request
        refused while they are down, or reset while in flight when they die, however the page handles it."""
        return [e for e in self.errors
                if not ("net::ERR_CONNECTION_" in e and any(f"127.0.0.1:{port}/" in e for port in ports))]


async def open_page(context: BrowserContext, url: str | None = None) -> WatchedPage:
    page = await context.new_page()
    watched = WatchedPage(page)
    page.on("console", lambda message: message.type == "error" and watched.errors.append(f"{message.text} ({message.location})"))
    page.on("pageerror", lambda error: watched.errors.append(f"uncaught: {error}"))
    await page.add_init_script(WATCH_LONG_TASKS)
    if url:
        await page.goto(url)
    return watched


async def new_context(browser: Browser, token: str | None = None, enforce_csp: bool = False, **options) -> BrowserContext:
    """A fresh profile; with `token`, the admin token is already kept in its localStorage.

    Playwright's `wait_for_function` evaluates its predicate with `eval`, which the pages' policy
    forbids, so contexts bypass the Content-Security-Policy unless `enforce_csp` (test_browser_csp.py
    runs the pages under their policy and polls with `page.evaluate`, which the policy does not cover).
    """
    options = {"viewport": VIEWPORT, "accept_downloads": True, "bypass_csp": not enforce_csp, **options}
    context = await browser.new_context(**options)
    if token:
        await context.add_init_script(f"localStorage.setItem('mlitb.adminToken', {token!r});")
    return context


def mnist_digits(directory: Path, count: int = 6) -> list[tuple[Path, int, np.ndarray]]:
    """The first test digit of `count` classes as PNG files: (path, label, uint8 pixels (28, 28, 1))."""
    digits = []
    with zipfile.ZipFile(DATASETS / "mnist-test.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))
        for label in range(count):
            name = next(n for n in names if n.split("/")[-2] == str(label))
            data = archive.read(name)
            path = directory / f"digit-{label}.png"
            path.write_bytes(data)
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.uint8)[:, :, None]
            digits.append((path, label, pixels))
    return digits


async def bars(page: Page) -> list[tuple[str, float]]:
    """The top-class bars a predict page shows: (label, probability)."""
    rows = await page.locator("#bars .bar").evaluate_all("rows => rows.map(r => [r.dataset.label, Number(r.dataset.p)])")
    return [(label, p) for label, p in rows]


async def eventually(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll an in-process condition (e.g. the master's view of a worker) until it holds, bounded in time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


async def classify_file(page: Page, path: Path) -> list[tuple[str, float]]:
    """Give a predict page an image file and return the bars it shows for that image."""
    await page.set_input_files("#image-file", path)
    await page.wait_for_selector(f'#bars[data-image="{path.name}"] .bar')
    return await bars(page)
