"""The pages a researcher and a volunteer use, in headless Chromium against a real master:
the new-project form re-fits its net to the dataset, the dashboard hands out a share link and a
complete worker command, shows chart values on hover and exports the metrics as CSV, the volunteer
page names the project and says what contributing costs before the button, and no page scrolls
sideways on a 390 px phone."""

from __future__ import annotations

import csv
import io
import json

import pytest
import pytest_asyncio

from mlitb.model import Net
from tests.browser_support import SCREENSHOTS, eventually, new_context, open_page
from tests.datazips import image_zip
from tests.master_support import ADMIN, TOKEN, copy_store, running_system, trainer

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Markup a description might carry: shown as text, it must never become an element or run.
HOSTILE = '<img src=x onerror="window.__xss=1"> digits & <b>friends</b>'
PHONE = {"width": 390, "height": 844}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(mnist_dir, tmp_path_factory):
    async with running_system(copy_store(mnist_dir, tmp_path_factory.mktemp("pages") / "store")) as system:
        yield system


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trained(system):
    """A project with a few iterations of history, then no trainer, so its metrics stay put (no
    evaluation either: it would fill test figures into the records later)."""
    project = await system.create_project(name="digits", description=HOSTILE, iteration_ms=200, eval_every=1000)
    async with trainer(system, project["id"]) as client:
        for _ in range(6):
            await client.send(client.compute(await client.expect("work")))
        await client.expect("work")  # the sixth result is applied and recorded
    rt = system.runtime(project["id"])
    await eventually(lambda: not rt.workers and rt.window is None, timeout=30, what="the loop idles without trainers")
    return project


@pytest_asyncio.fixture(loop_scope="module")
async def researcher(browser):
    context = await new_context(browser, token=TOKEN)
    yield context
    await context.close()


async def layers_of(page) -> list[dict]:
    return json.loads(await page.input_value("#layers"))


async def test_the_form_refits_the_net_to_an_uploaded_dataset_and_blocks_a_net_that_does_not_fit(system, researcher, tmp_path):
    form = await open_page(researcher, f"{system.master_url}/new.html")
    page = form.page
    await page.wait_for_selector("#check.ok")
    photos, _ = image_zip(classes=("cat", "dog"), per_class=6, height=32, width=32, channels=3, root="photos")
    (tmp_path / "photos.zip").write_bytes(photos)
    await page.click("#upload-box summary")
    await page.set_input_files("#upload-file", tmp_path / "photos.zip")
    await page.fill("#upload-name", "photos")
    await page.click("#upload")
    await page.wait_for_selector("#upload-message.ok >> text=is ready")
    layers = await layers_of(page)
    assert layers[0] == {"type": "input", "out_sx": 32, "out_sy": 32, "out_depth": 3}
    assert layers[-1] == {"type": "softmax", "num_classes": 2}
    assert await page.input_value("input[name=name]") == "photos convnet"
    await page.wait_for_selector(f"#check.ok >> text={Net(layers).param_count:,} parameters")
    assert await page.locator("#create").is_enabled()

    wrong = [dict(layer) for layer in layers]
    wrong[-1]["num_classes"] = 10
    await page.fill("#layers", json.dumps(wrong))
    await page.wait_for_selector("#check.error >> text=the dataset has 2 classes but the model outputs 10")
    assert await page.locator("#create").is_disabled()
    assert "a net that fits the dataset" in await page.inner_text("#create-hint")

    await page.select_option("#dataset", system.dataset["id"])  # MNIST: the net and the name follow
    refitted = await layers_of(page)
    assert refitted[0] == {"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1}
    assert refitted[-1]["num_classes"] == 10
    assert await page.input_value("input[name=name]") == "mnist convnet"
    await page.wait_for_selector("#check.ok")
    await page.fill("input[name=name]", "My digits")
    datasets = (await system.api.get(f"{system.data_url}/datasets")).json()["datasets"]
    await page.select_option("#dataset", next(d["id"] for d in datasets if d["name"] == "photos"))
    await page.wait_for_selector("#check.ok")
    assert (await layers_of(page))[-1]["num_classes"] == 2
    assert await page.input_value("input[name=name]") == "My digits", "a typed name stays"

    await page.fill("#description", HOSTILE)
    await page.screenshot(path=SCREENSHOTS / "new-project-fitted.png", full_page=True)
    await page.click("#create")
    await page.wait_for_url("**/dashboard.html?project=*")
    created = (await system.api.get(f"/api/projects/{page.url.split('project=')[1]}")).json()
    assert created["description"] == HOSTILE and created["status"] == "running"
    assert created["layers"][0]["out_depth"] == 3
    await page.wait_for_selector("#description-shown:not(.hidden)")
    assert await page.inner_text("#description-shown") == HOSTILE
    assert await page.locator("#description-shown img").count() == 0
    assert await page.evaluate("window.__xss") is None
    form.assert_no_console_errors()


async def test_the_dashboard_shares_the_project_and_edits_its_description(system, trained, browser):
    context = await new_context(browser, token=TOKEN)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=system.master_url)
    dashboard = await open_page(context, f"{system.master_url}/dashboard.html?project={trained['id']}")
    page = dashboard.page
    await page.wait_for_function("document.getElementById('share-link').value !== ''")
    link = f"{system.master_url}/?project={trained['id']}"
    command = f"mlitb worker --master {system.master_url} --project {trained['id']}"
    assert await page.input_value("#share-link") == link
    assert await page.input_value("#worker-command") == command
    await page.click("button[data-copy=worker-command]")
    await page.wait_for_selector("#copy-message.ok >> text=Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == command
    await page.click("button[data-copy=share-link]")
    await page.wait_for_function(f"navigator.clipboard.readText().then(t => t === {json.dumps(link)})")
    assert await page.inner_text("#description-shown") == HOSTILE
    assert await page.locator("#description-shown img").count() == 0

    await page.fill("#about textarea[name=description]", "Handwritten digits, for a class at the university.")
    await page.click("#about button[type=submit]")
    await page.wait_for_selector("#message.ok >> text=Description saved")
    assert (await system.api.get(f"/api/projects/{trained['id']}")).json()["description"].startswith("Handwritten")
    await system.api.patch(f"/api/projects/{trained['id']}", json={"description": HOSTILE}, headers=ADMIN)
    dashboard.assert_no_console_errors()
    await context.close()


async def test_chart_values_on_hover_labels_apart_and_the_metrics_as_csv(system, trained, researcher):
    history = (await system.api.get(f"/api/projects/{trained['id']}/metrics")).json()
    trained_records = [m for m in history if m["train_loss"] is not None]
    assert len(trained_records) == 6
    dashboard = await open_page(researcher, f"{system.master_url}/dashboard.html?project={trained['id']}")
    page = dashboard.page
    await page.wait_for_function(f"document.getElementById('chart-loss').dataset.points?.split(',')[0] === '{len(trained_records)}'")

    for chart in ("chart-loss", "chart-accuracy", "chart-duration", "chart-rate"):
        layout = json.loads(await page.get_attribute(f"#{chart}", "data-layout"))
        assert layout["yLabelSpan"][1] <= layout["yTickSpan"][0], (chart, layout)
        assert layout["xTickSpan"][1] <= layout["xLabelSpan"][0], (chart, layout)

    canvas = page.locator("#chart-loss canvas")
    await canvas.scroll_into_view_if_needed()
    box = await canvas.bounding_box()
    layout = json.loads(await page.get_attribute("#chart-loss", "data-layout"))
    await page.mouse.move(box["x"] + layout["left"] + layout["plotW"] * 0.98, box["y"] + box["height"] / 2)
    tip = page.locator("#chart-loss .chart-tip:not(.hidden)")
    await tip.wait_for()
    row = tip.locator("[data-series='training loss']")
    hovered = int(await row.get_attribute("data-x"))
    record = next(m for m in history if m["iteration"] == hovered)
    assert hovered == trained_records[-1]["iteration"]
    assert float(await row.get_attribute("data-value")) == pytest.approx(record["train_loss"])
    assert f"{record['train_loss']:.4g}"[:4] in await row.inner_text()
    await page.screenshot(path=SCREENSHOTS / "dashboard-hover.png", full_page=True)
    await page.mouse.move(box["x"] - 20, box["y"] - 20)
    await page.locator("#chart-loss .chart-tip.hidden").wait_for(state="attached")

    async with page.expect_download() as download_info:
        await page.click("#metrics-csv")
    download = await download_info.value
    assert download.suggested_filename == f"{trained['id']}-metrics.csv"
    rows = list(csv.DictReader(io.StringIO((await download.path()).read_text())))
    assert [int(r["iteration"]) for r in rows] == [m["iteration"] for m in history]
    for r, m in zip(rows, history):
        assert r["train_loss"] == "" if m["train_loss"] is None else float(r["train_loss"]) == pytest.approx(m["train_loss"])
        assert float(r["examples_per_s"]) == pytest.approx(m["examples_per_s"])
        assert r["test_accuracy"] == "" and m["test_accuracy"] is None
    dashboard.assert_no_console_errors()


def format_bytes(n: float) -> str:
    """The pages' formatBytes (format.js)."""
    units, i = ["B", "KB", "MB", "GB"], 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.{1 if i else 0}f} {units[i]}"


async def test_the_volunteer_page_says_what_it_costs_keeps_its_counters_and_clears_its_cache(system, browser):
    project = await system.create_project(name="Digits for science", description=HOSTILE, iteration_ms=500)
    context = await new_context(browser)
    # A two-core device, whatever machine runs the test.
    await context.add_init_script("Object.defineProperty(Navigator.prototype, 'hardwareConcurrency', {get: () => 2});")
    volunteer = await open_page(context, f"{system.master_url}/?project={project['id']}")
    page = volunteer.page
    await page.wait_for_function("!document.getElementById('contribute').disabled")
    item = page.locator("#projects li", has=page.locator(f"input[value='{project['id']}']"))
    assert await item.locator(".name").inner_text() == "Digits for science"
    assert await item.locator(".about").inner_text() == HOSTILE
    assert await page.locator("#projects img").count() == 0 and await page.evaluate("window.__xss") is None

    shards = system.dataset["splits"]["train"]["shards"]
    total = sum(s["bytes"] for s in shards)
    cost = page.locator(f"#cost[data-project='{project['id']}']")
    await cost.wait_for()
    assert await cost.get_attribute("data-bytes") == str(total)
    text = await cost.inner_text()
    assert f"up to {format_bytes(total)} of training data ({len(shards)} shards)" in text, text
    assert "1 trainer keeps one CPU core of this device's 2 busy" in text and "battery" in text, text

    await page.fill("#trainers", "64")
    await page.dispatch_event("#trainers", "change")
    assert await page.input_value("#trainers") == "2"
    assert "2 CPU cores: at most 2 trainers" in await page.inner_text("#trainers-note")
    await page.wait_for_function("document.getElementById('cost').textContent.includes('2 trainers keep 2 CPU cores')")
    await page.fill("#trainers", "1")
    await page.dispatch_event("#trainers", "change")

    await page.click("#contribute")
    await page.wait_for_function("document.getElementById('state').textContent === 'training'", timeout=60_000)
    await page.wait_for_function("Number(document.getElementById('device').dataset.accepted) >= 2", timeout=60_000)
    await page.wait_for_function("document.getElementById('examples-per-s').textContent !== '0'")
    await system.api.post(f"/api/projects/{project['id']}/pause", headers=ADMIN)
    await page.wait_for_function("document.getElementById('state').textContent === 'paused'")
    assert await page.inner_text("#examples-per-s") == "0", "no stale rate while paused"
    await page.screenshot(path=SCREENSHOTS / "volunteer-paused.png", full_page=True)
    await page.click("#contribute")
    await page.wait_for_function("document.getElementById('state').textContent === 'stopped'")
    before = {k: int(v) for k, v in (await page.evaluate("({...document.getElementById('device').dataset})")).items()}
    assert before["iterations"] >= 2 and before["examples"] > 0 and before["accepted"] >= 2, before

    await page.reload()
    await page.wait_for_function("!document.getElementById('contribute').disabled")
    after = {k: int(v) for k, v in (await page.evaluate("({...document.getElementById('device').dataset})")).items()}
    assert after == before, "the counters survive a reload"
    assert await page.inner_text("#iterations") == f"{before['iterations']:,}"

    await page.wait_for_function("Number(document.getElementById('cache-size').dataset.bytes) > 0")
    await page.click("#clear-cache")
    await page.wait_for_selector("#cache-message[data-cleared=true]")
    assert await page.get_attribute("#cache-size", "data-bytes") == "0"
    usage = await page.evaluate("import('/js/shard-cache.js').then(m => m.cacheUsage())")
    assert usage == {"shards": 0, "bytes": 0}
    volunteer.assert_no_console_errors()
    await context.close()


@pytest.mark.parametrize("path", ["/dashboard.html?project={id}", "/new.html", "/?project={id}"])
async def test_no_sideways_overflow_on_a_390px_phone(system, trained, browser, path):
    context = await new_context(browser, token=TOKEN, viewport=PHONE, is_mobile=True)
    phone = await open_page(context, f"{system.master_url}{path.format(id=trained['id'])}")
    page = phone.page
    await page.wait_for_load_state("networkidle")
    if path.startswith("/dashboard"):
        await page.wait_for_function("document.getElementById('worker-command').value !== ''")
    if path == "/new.html":
        await page.wait_for_selector("#check.ok")
    # A phone zooms out to fit a page wider than itself, which widens innerWidth: pin it first.
    assert await page.evaluate("window.innerWidth") == PHONE["width"]
    overflow = await page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    name = path.split("?")[0].strip("/").replace(".html", "") or "volunteer"
    await page.screenshot(path=SCREENSHOTS / f"phone-{name}.png", full_page=True)
    assert overflow <= 0, f"{path} is {overflow} px wider than a 390 px phone"
    phone.assert_no_console_errors()
    await context.close()
