"""MLitB's take-a-picture in headless Chromium: after classifying an image with the live project's
model, the predict page adds it, with a label, to the project's dataset on the data server."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from tests.browser_support import classify_file, mnist_digits, new_context, open_page
from tests.datazips import make_zip
from tests.master_support import TOKEN, copy_store, mnist_store_dir, running_system

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    return mnist_store_dir(tmp_path_factory)


@pytest_asyncio.fixture(loop_scope="module")
async def system(mnist_dir, tmp_path):
    async with running_system(copy_store(mnist_dir, tmp_path / "store")) as running:
        yield running


async def test_predict_page_adds_the_picture_to_the_live_dataset(system, browser, tmp_path):  # noqa: F811
    project = await system.create_project(status="paused")
    before = system.dataset["splits"]["train"]
    context = await new_context(browser, token=TOKEN)
    page = await open_page(context, f"{system.master_url}/predict.html?project={project['id']}")
    await page.page.wait_for_selector("#model-message.ok >> text=from the live project")
    path, label, _ = mnist_digits(tmp_path, count=4)[3]
    await classify_file(page.page, path)
    await page.page.select_option("#add-label", str(label))
    await page.page.click("#add")
    await page.page.wait_for_selector("#add-message.ok >> text=Added as 3")
    manifest = (await system.api.get(f"{system.data_url}/datasets/{system.dataset['id']}")).json()
    assert manifest["revision"] == 1 and manifest["splits"]["train"]["count"] == before["count"] + 1
    assert manifest["splits"]["train"]["counts"]["3"] == before["counts"]["3"] + 1
    assert await page.page.get_attribute("#add-message", "data-train-count") == str(before["count"] + 1)
    page.assert_no_console_errors()
    await context.close()


async def test_dashboard_adds_a_zip_to_the_projects_dataset(system, browser, tmp_path):  # noqa: F811
    project = await system.create_project(status="paused")
    zipped = tmp_path / "more.zip"
    zipped.write_bytes(make_zip({f"more/{path.stem[-1]}/{path.name}": path.read_bytes() for path, _, _ in mnist_digits(tmp_path)}))
    context = await new_context(browser, token=TOKEN)
    page = await open_page(context, f"{system.master_url}/dashboard.html?project={project['id']}")
    await page.page.set_input_files("#add-zip", zipped)
    await page.page.click("#add-data")
    count = system.dataset["splits"]["train"]["count"] + 6
    await page.page.wait_for_selector(f"#add-message.ok >> text=now has {count:,} training examples")
    page.assert_no_console_errors()
    await context.close()
