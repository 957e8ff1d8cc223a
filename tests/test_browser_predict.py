"""A volunteer's browser answers prediction requests (headless Chromium, the JS engine in a Web Worker).

The volunteer page's "Answer prediction requests" box is on by default: its
trainer connections then take `predict` chunks between results, and the
endpoint's answers equal the closure's (numpy) predictions. Unticked, the
browser takes none and the master's fallback process answers instead.
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import pytest_asyncio

from mlitb.closure import load_closure
from mlitb.predict import classify
from tests.browser_support import eventually, new_context, open_page
from tests.master_support import copy_store, running_system

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(mnist_dir, tmp_path_factory):
    async with running_system(copy_store(mnist_dir, tmp_path_factory.mktemp("predict") / "store")) as system:
        yield system


async def predict_through_a_volunteer(system, browser, answer_predictions: bool):
    project = (await system.create_project(status="paused"))["id"]
    runtime = system.runtime(project)
    context = await new_context(browser)
    try:
        volunteer = await open_page(context, f"{system.master_url}/?project={project}")
        page = volunteer.page
        await page.wait_for_function("!document.getElementById('contribute').disabled")
        await page.fill("#trainers", "1")
        assert await page.is_checked("#predict")  # on by default
        if not answer_predictions:
            await page.uncheck("#predict")
        await page.click("#contribute")
        await eventually(lambda: len(runtime.workers) == 1, timeout=60, what="the browser's trainer joined")
        assert runtime.predictions.workers == (1 if answer_predictions else 0)
        batch = np.random.default_rng(2).integers(0, 256, (400, 28, 28, 1), np.uint8)
        response = await system.api.post(
            f"/api/projects/{project}/predict", headers={"Content-Type": "application/msgpack"},
            content=msgpack.packb({"shape": list(batch.shape), "pixels": batch.tobytes()}))
        assert response.status_code == 200, response.text
        volunteer.assert_no_console_errors()
        closure = load_closure((await system.api.get(f"/api/projects/{project}/closure")).text)
        return response.json(), classify(closure, batch), set(runtime.workers)
    finally:
        await context.close()


async def test_a_volunteer_browser_answers_predictions_like_the_closure(system, browser):
    answer, expected, browser_ids = await predict_through_a_volunteer(system, browser, answer_predictions=True)
    got = np.array([p["probabilities"] for p in answer["predictions"]])
    assert [p["label"] for p in answer["predictions"]] == list(expected.argmax(axis=1))
    assert np.abs(got - expected).max() <= 1e-5
    assert {c["worker"] for c in answer["chunks"]} == browser_ids


async def test_unticked_the_browser_takes_no_predictions(system, browser):
    answer, expected, _ = await predict_through_a_volunteer(system, browser, answer_predictions=False)
    assert {c["worker"] for c in answer["chunks"]} == {"master"}
    assert [p["label"] for p in answer["predictions"]] == list(expected.argmax(axis=1))


async def test_the_predict_page_predicts_a_folder_through_the_endpoint(system, browser, tmp_path):
    from PIL import Image

    from mlitb.predict import image_pixels

    project = (await system.create_project(status="paused"))["id"]
    folder = tmp_path / "digits"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (28, 28), np.uint8), "L").save(folder / f"{i:02d}.png")
    (folder / "notes.txt").write_text("not an image: left out")
    context = await new_context(browser)
    try:
        watched = await open_page(context, f"{system.master_url}/predict.html?project={project}")
        page = watched.page
        await page.wait_for_selector("#model-message[data-loaded]")
        await page.set_input_files("#folder", folder)
        await page.wait_for_selector("#folder-message[data-done]")
        rows = await page.locator("#folder-results tbody tr").evaluate_all(
            "rows => rows.map(r => [r.cells[0].textContent, Number(r.dataset.label)])")
        watched.assert_no_console_errors()
    finally:
        await context.close()
    files = sorted(folder.glob("*.png"))
    closure = load_closure((await system.api.get(f"/api/projects/{project}/closure")).text)
    expected = classify(closure, np.stack([image_pixels(str(f), (28, 28, 1)) for f in files])).argmax(axis=1)
    assert [name.split("/")[-1] for name, _ in rows] == [f.name for f in files]
    assert [label for _, label in rows] == list(expected)
