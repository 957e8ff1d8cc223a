"""A browser volunteer with compressed results, delta parameters and local steps trains MNIST.

Headless Chromium (the JS trainer in its Web Worker) on a project that allows
only top-k results and int8 parameter deltas, with two local steps and the
Nesterov outer optimizer, and on a plain float32 project; the master's own
evaluation must reach the target in both.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio

from mlitb.model.zoo import MNIST_SOFTMAX
from tests.browser_support import new_context, open_page
from tests.master_support import ADMIN, copy_store, running_system

pytestmark = pytest.mark.asyncio(loop_scope="module")

TARGET = 0.85
MAX_ITERATIONS = 200


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(mnist_dir, tmp_path_factory):
    async with running_system(copy_store(mnist_dir, tmp_path_factory.mktemp("links") / "store")) as system:
        yield system


COMPRESSED = ({"name": "nesterov", "learning_rate": 0.7, "momentum": 0.9},
              {"result_codecs": ["topk"], "param_codecs": ["delta-i8"], "topk_ratio": 0.05, "local_steps": 2,
               "local_learning_rate": 0.5},
              {"result": "topk", "params": "delta-i8", "local_steps": 2})
PLAIN = ({"name": "adagrad", "learning_rate": 0.05}, {}, {"result": "f32", "params": "f32", "local_steps": 1})


@pytest.mark.parametrize("optimizer,links,codecs", [COMPRESSED, PLAIN], ids=["topk-delta-i8-H2", "f32"])
async def test_a_browser_trains_with_the_codecs_and_local_steps_of_its_project(system, browser, optimizer, links,
                                                                                codecs):
    body = {"name": "links", "dataset": system.dataset["id"], "layers": MNIST_SOFTMAX, "iteration_ms": 700,
            "eval_every": 5, "status": "running", "optimizer": optimizer, "links": links}
    response = await system.api.post("/api/projects", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    project = response.json()["id"]
    context = await new_context(browser)
    try:
        volunteer = await open_page(context, f"{system.master_url}/?project={project}")
        page = volunteer.page
        await page.wait_for_function("!document.getElementById('contribute').disabled")
        await page.fill("#trainers", "1")
        await page.click("#contribute")

        async def reached():
            state = (await system.api.get(f"/api/projects/{project}")).json()
            accuracy = (state["metrics"] or {}).get("test_accuracy")
            assert state["iteration"] <= MAX_ITERATIONS, \
                f"iteration {state['iteration']}: test accuracy {accuracy}; workers {state['workers']}; {state.get('counters')}"
            return accuracy is not None and accuracy >= TARGET and state

        deadline = time.monotonic() + 600
        while not await reached():  # poll the master's API, bounded in time
            assert time.monotonic() < deadline, f"{TARGET:.0%} test accuracy from the browser: not within 600 s"
            await asyncio.sleep(0.5)
        state = (await system.api.get(f"/api/projects/{project}")).json()
        [worker] = state["workers"]
        assert worker["kind"] == "browser"
        assert worker["codecs"] == codecs
        assert worker["accepted"] > 0 and worker["dropped"] <= worker["accepted"]
        volunteer.assert_no_console_errors()
    finally:
        await context.close()
