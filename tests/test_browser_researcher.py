"""The researcher's pages in headless Chromium: the new-project form (templates,
live layer validation, dataset upload with progress and refusals, from a
closure file), the dashboard's live controls, and every page on a phone."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from mlitb.model import Net
from mlitb.model.zoo import MNIST_CONVNET
from tests.browser_support import new_context, open_page
from tests.datazips import image_zip
from tests.master_support import ADMIN, TINY_LAYERS, TOKEN, copy_store, running_system

pytestmark = pytest.mark.asyncio(loop_scope="module")

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(mnist_dir, tmp_path_factory):
    async with running_system(copy_store(mnist_dir, tmp_path_factory.mktemp("researcher") / "store")) as system:
        yield system


@pytest_asyncio.fixture(loop_scope="module")
async def researcher(browser):
    """A browser profile that already holds the admin token."""
    context = await new_context(browser, token=TOKEN)
    yield context
    await context.close()


async def test_new_project_from_the_form_with_the_mnist_template(system, browser):
    context = await new_context(browser)
    form = await open_page(context, f"{system.master_url}/new.html")
    page = form.page
    await page.select_option("#dataset", system.dataset["id"])
    await page.select_option("#template", "mnist")
    await page.click("#use-template")
    expected = Net(MNIST_CONVNET).param_count
    await page.wait_for_selector(f"#check.ok >> text={expected:,} parameters")
    assert await page.locator("#shapes tbody tr").count() == len(Net(MNIST_CONVNET).layers)
    await page.fill("input[name=name]", "Digits from the form")
    await page.click("#create")
    await page.fill("dialog.token-dialog input[name=token]", TOKEN)
    await page.click("dialog.token-dialog button[value=ok]")
    await page.wait_for_url("**/dashboard.html?project=*")
    await page.wait_for_selector("#name >> text=Digits from the form")
    project_id = page.url.split("project=")[1]
    project = (await system.api.get(f"/api/projects/{project_id}")).json()
    assert project["layers"] == MNIST_CONVNET
    assert project["dataset"] == system.dataset["id"]
    assert project["optimizer"]["name"] == "adagrad" and project["optimizer"]["learning_rate"] == 0.01
    assert await page.evaluate("localStorage.getItem('mlitb.adminToken')") == TOKEN
    form.assert_no_console_errors()
    await context.close()


async def test_layer_errors_name_the_layer_and_the_field(system, researcher):
    form = await open_page(researcher, f"{system.master_url}/new.html")
    page = form.page
    await page.wait_for_selector("#check.ok")
    await page.select_option("#dataset", system.dataset["id"])
    await page.select_option("#template", "cifar")
    await page.click("#use-template")
    cifar = json.loads(await page.input_value("#layers"))
    assert [layer["type"] for layer in cifar].count("conv") == 3
    assert cifar[0] == {"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1}, "fitted to the dataset"
    await page.wait_for_selector(f"#check.ok >> text={Net(cifar).param_count:,} parameters")
    broken = [dict(layer) for layer in MNIST_CONVNET]
    broken[3]["filters"] = 0
    await page.fill("#layers", str(broken).replace("'", '"'))
    error = page.locator("#check.error")
    await error.wait_for()
    text = await error.inner_text()
    assert "layer 3" in text and "filters" in text, text
    assert await page.locator("#create").is_disabled()
    await page.fill("#layers", "[{")
    await page.wait_for_selector("#check.error >> text=not valid JSON")
    form.assert_no_console_errors(refused="/api/layers/check")


async def test_uploading_a_dataset_zip_shows_progress_and_the_refusal(system, researcher, tmp_path):
    form = await open_page(researcher, f"{system.master_url}/new.html")
    page = form.page
    await page.click("#upload-box summary")
    good, _examples = image_zip(classes=("cat", "dog", "eel"), per_class=12, height=8, width=8)
    (tmp_path / "pets.zip").write_bytes(good)
    await page.set_input_files("#upload-file", tmp_path / "pets.zip")
    await page.fill("#upload-name", "pets")
    await page.click("#upload")
    await page.wait_for_selector("#upload-message.ok >> text=is ready")
    assert await page.locator("#upload-progress").evaluate("bar => bar.style.width") == "100%"
    datasets = (await system.api.get(f"{system.data_url}/datasets")).json()["datasets"]
    pets = next(d for d in datasets if d["name"] == "pets")
    assert await page.locator("#dataset").input_value() == pets["id"]
    assert pets["classes"] == ["cat", "dog", "eel"]

    (tmp_path / "notes.zip").write_bytes(b"these are not images")
    refusal = await system.api.post(f"{system.data_url}/datasets", headers=ADMIN,
                                    files={"train": ("notes.zip", b"these are not images", "application/zip")})
    assert refusal.status_code == 400
    await page.set_input_files("#upload-file", tmp_path / "notes.zip")
    await page.click("#upload")
    message = page.locator("#upload-message.error")
    await message.wait_for()
    assert refusal.json()["error"] in await message.inner_text()
    assert await page.locator("#upload-progress").evaluate("bar => bar.style.width") == "0%"
    form.assert_no_console_errors(refused=f"{system.data_url}/datasets")


async def test_changing_the_learning_rate_live(system, researcher):
    project = await system.create_project(name="live", layers=TINY_LAYERS)
    dashboard = await open_page(researcher, f"{system.master_url}/dashboard.html?project={project['id']}")
    page = dashboard.page
    await page.wait_for_selector("#project:not(.hidden)")
    assert await page.input_value("input[name=learning_rate]") == "0.01"
    await page.fill("input[name=learning_rate]", "0.003")
    await page.fill("input[name=iteration_ms]", "1500")
    await page.click("#hyper button[type=submit]")
    await page.wait_for_selector("#message.ok >> text=learning rate 0.003")
    fresh = (await system.api.get(f"/api/projects/{project['id']}")).json()
    assert fresh["optimizer"]["learning_rate"] == 0.003
    assert fresh["iteration_ms"] == 1500
    assert system.runtime(project["id"]).definition.optimizer["learning_rate"] == 0.003
    await page.reload()
    await page.wait_for_selector("#project:not(.hidden)")
    assert await page.input_value("input[name=learning_rate]") == "0.003"
    dashboard.assert_no_console_errors()


async def test_pause_start_and_delete_from_the_dashboard(system, researcher):
    project = await system.create_project(name="short-lived", layers=TINY_LAYERS)
    dashboard = await open_page(researcher, f"{system.master_url}/dashboard.html?project={project['id']}")
    page = dashboard.page
    await page.click("#pause")
    await page.wait_for_selector("#status >> text=paused")
    assert (await system.api.get(f"/api/projects/{project['id']}")).json()["status"] == "paused"
    await page.click("#start")
    await page.wait_for_selector("#status >> text=running")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("#delete")
    await page.wait_for_selector("#chooser:not(.hidden)")
    assert (await system.api.get(f"/api/projects/{project['id']}")).status_code == 404
    dashboard.assert_no_console_errors()


async def test_new_project_from_a_closure_file(system, researcher, tmp_path):
    source = await system.create_project(name="to resume", layers=TINY_LAYERS)
    closure = (await system.api.get(f"/api/projects/{source['id']}/closure")).text
    (tmp_path / "resume.closure.json").write_text(closure)
    form = await open_page(researcher, f"{system.master_url}/new.html")
    page = form.page
    await page.set_input_files("#closure-file", tmp_path / "resume.closure.json")
    await page.click("#from-closure")
    await page.wait_for_url("**/dashboard.html?project=*")
    resumed = (await system.api.get(f"/api/projects/{page.url.split('project=')[1]}")).json()
    assert resumed["id"] != source["id"]
    assert resumed["layers"] == TINY_LAYERS
    assert resumed["param_count"] == source["param_count"]
    form.assert_no_console_errors()


@pytest.mark.parametrize("path", ["/", "/dashboard.html", "/new.html", "/predict.html"])
async def test_every_page_fits_a_phone(system, browser, path):
    context = await new_context(browser, viewport={"width": 375, "height": 740}, is_mobile=True)
    phone = await open_page(context, f"{system.master_url}{path}")
    await phone.page.wait_for_load_state("networkidle")
    # A phone zooms out to fit a page wider than itself, which widens innerWidth: so pin it.
    assert await phone.page.evaluate("window.innerWidth") == 375
    overflow = await phone.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{path} is {overflow} px wider than a phone"
    phone.assert_no_console_errors()
    await context.close()
