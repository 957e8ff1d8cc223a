"""mlitb as published: a built wheel in a fresh virtual environment is the whole system.

The wheel is built from a copy of the package sources (as a fresh clone
would), installed without `-e` and with its runtime dependencies only (pip
fetches them from the package index; pip's cache makes later runs fast), and
run from an empty directory with no PYTHONPATH, so nothing can come from this
checkout. A browser volunteer then trains through it, and every sub-command's
happy path runs from the venv.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from mlitb import __version__
from tests.browser_support import new_context, open_page
from tests.cli_lifecycle import run_every_command
from tests.cli_support import Serve, clean_env
from tests.helpers import REPO, poll_until

IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")
SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "mlitb")


def _run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (REPO / name).is_dir() else {}))
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, source, cwd=source)
    (built,) = dist.glob("mlitb-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The venv's `bin` directory with mlitb installed from the wheel."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    _run(env_dir / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel,
         cwd=env_dir)
    return env_dir / "bin"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def serving(installed, tmp_path_factory):
    env = {k: v for k, v in clean_env().items() if k != "PYTHONPATH"}
    env["PATH"] = f"{installed}{os.pathsep}{env['PATH']}"
    serve = Serve(tmp_path_factory.mktemp("empty"), command=[str(installed / "mlitb")], env=env)
    serve.start(timeout=180)
    try:
        yield serve
    finally:
        print(serve.stop())


def test_the_wheel_carries_the_browser_client_and_mnist(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("mlitb/static/index.html", "mlitb/static/dashboard.html", "mlitb/static/engine/kernels.wasm",
                   "mlitb/datasets/mnist-train.zip", "mlitb/datasets/mnist-test.zip", "mlitb/cli/__main__.py"):
        assert needed in names, f"{needed} is not in {wheel.name}"


def test_the_installed_command_is_the_wheels(installed, tmp_path):
    done = subprocess.run([installed / "mlitb", "--version"], cwd=tmp_path, capture_output=True, text=True,
                          env={k: v for k, v in clean_env().items() if k != "PYTHONPATH"}, timeout=60, check=False)
    assert done.stdout.strip() == f"mlitb {__version__}", done.stderr
    where = subprocess.run([installed / "python", "-c", "import mlitb; print(mlitb.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, env={k: v for k, v in clean_env().items() if k != "PYTHONPATH"},
                           timeout=60, check=False)
    assert str(installed.parent) in where.stdout and str(REPO) not in where.stdout


@IN_MODULE_LOOP
async def test_serve_from_an_empty_directory_gives_pages_engine_and_mnist(serving):
    async with httpx.AsyncClient(base_url=serving.url, timeout=30) as http:
        page, wasm, datasets = [await http.get(p) for p in ("/", "/engine/kernels.wasm", "/data/datasets")]
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert wasm.status_code == 200 and wasm.content[:4] == b"\0asm"
    assert [d["name"] for d in datasets.json()["datasets"]] == ["mnist"]


@IN_MODULE_LOOP
async def test_a_browser_volunteer_trains_through_the_wheel(serving, browser):
    async with httpx.AsyncClient(timeout=30) as http:
        (demo,) = (await http.get(f"{serving.url}/api/projects")).json()
    context = await new_context(browser)
    try:
        volunteer = await open_page(context, f"{serving.url}/?project={demo['id']}")
        page = volunteer.page
        await page.wait_for_function("!document.getElementById('contribute').disabled")
        await page.fill("#trainers", "1")
        await page.click("#contribute")

        def browser_results() -> int:
            workers = httpx.get(f"{serving.url}/api/projects/{demo['id']}", timeout=30).json()["workers"]
            return sum(w["accepted"] for w in workers if w["kind"] == "browser") >= 3

        await asyncio.to_thread(poll_until, browser_results, timeout=300, what="the browser's results are accepted")
    finally:
        await context.close()


@IN_MODULE_LOOP
async def test_every_sub_command_from_the_wheel(serving, tmp_path):
    await asyncio.to_thread(run_every_command, serving, tmp_path)
