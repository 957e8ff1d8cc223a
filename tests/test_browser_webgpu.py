"""The WebGPU engine in headless Chromium on SwiftShader (no GPU needed): parity
on every vector inside a Web Worker, a volunteer tab that trains the demo
project with WebGPU forced, and a missing kernels.wasm reported everywhere
(the volunteer page, hello's engine, the dashboard's worker row)."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from mlitb.master.serve import DEMO_LAYERS
from tests.browser_support import chromium, eventually, new_context, open_page
from tests.helpers import REPO
from tests.master_support import ADMIN, TOKEN, copy_store, running_system

pytestmark = pytest.mark.asyncio(loop_scope="module")

VECTORS = sorted((REPO / "tests" / "vectors").glob("*.json"))
GOAL_ACCURACY = 0.5  # chance is 0.1
MAX_ITERATIONS = 400
TRAINING_TIMEOUT_MS = 900_000

# In a module Worker: the WebGPU engine (forced onto the fallback adapter) on each vector.
PARITY_IN_WORKER = """async ([origin, vectors]) => {
  const code = `
    import { openGpu, createGpuNet } from "${origin}/engine/gpu-net.js";
    const floats = (b64) => { const s = atob(b64), b = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i); return new Float32Array(b.buffer); };
    const norm = (a) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
    onmessage = async ({ data }) => {
      const out = { inWorker: typeof WorkerGlobalScope !== "undefined", vectors: {} };
      const gpu = await openGpu({ allowFallback: true });
      if (gpu.error) { postMessage({ error: gpu.error }); return; }
      out.description = gpu.description;
      for (const [name, v] of Object.entries(data)) {
        try {
          const net = await createGpuNet(v.layers, { device: gpu.device, maxBatch: 3 });
          const g = await net.gradient(floats(v.params), floats(v.x), v.labels, v.n, { seed: v.seed });
          const want = floats(v.expected.grad_sum);
          out.vectors[name] = { gradRelError: norm(g.gradSum.map((x, i) => x - want[i])) / Math.max(norm(want), 1e-12),
            loss: g.lossSum, wantLoss: v.expected.loss_sum, correct: g.correct, wantCorrect: v.expected.correct };
        } catch (e) { out.vectors[name] = { error: String(e.stack || e) }; }
      }
      postMessage(out);
    };`;
  const worker = new Worker(URL.createObjectURL(new Blob([code], { type: "text/javascript" })), { type: "module" });
  const result = await new Promise((resolve, reject) => {
    worker.onmessage = ({ data }) => resolve(data);
    worker.onerror = (e) => reject(new Error(e.message));
    worker.postMessage(vectors);
  });
  worker.terminate();
  return result;
}"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser():
    async with chromium("--enable-unsafe-webgpu") as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(mnist_dir, tmp_path_factory):
    async with running_system(copy_store(mnist_dir, tmp_path_factory.mktemp("webgpu") / "store")) as system:
        yield system


async def test_the_webgpu_engine_matches_every_parity_vector_in_a_worker(system, browser):
    context = await new_context(browser)
    try:
        page = (await open_page(context, f"{system.master_url}/dashboard.html")).page
        vectors = {path.name: json.loads(path.read_text()) for path in VECTORS}
        result = await page.evaluate(PARITY_IN_WORKER, [system.master_url, vectors])
    finally:
        await context.close()
    assert "error" not in result, result
    assert result["inWorker"] and "swiftshader" in result["description"], result
    assert sorted(result["vectors"]) == sorted(vectors)
    for name, r in result["vectors"].items():
        assert "error" not in r, (name, r)
        assert r["gradRelError"] <= 1e-4, (name, r)
        assert r["correct"] == r["wantCorrect"], (name, r)
        assert abs(r["loss"] - r["wantLoss"]) <= 1e-5 * max(1, abs(r["wantLoss"])), (name, r)


async def test_a_volunteer_with_webgpu_forced_trains_the_demo_project(system, browser):
    body = {"name": "MNIST on WebGPU", "dataset": system.dataset["id"], "layers": DEMO_LAYERS, "iteration_ms": 1500,
            "eval_every": 5, "optimizer": {"name": "adam", "learning_rate": 0.002}, "status": "running"}
    response = await system.api.post("/api/projects", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    project = response.json()
    volunteer_context, researcher_context = await new_context(browser), await new_context(browser, token=TOKEN)
    try:
        dashboard = await open_page(researcher_context, f"{system.master_url}/dashboard.html?project={project['id']}")
        volunteer = await open_page(volunteer_context, f"{system.master_url}/?project={project['id']}&engine=webgpu")
        page = volunteer.page
        await page.wait_for_function("!document.getElementById('contribute').disabled")
        assert await page.locator("#engine").input_value() == "webgpu"
        await page.fill("#trainers", "1")
        await page.click("#contribute")
        await page.wait_for_function("document.getElementById('state').textContent === 'training'", timeout=120_000)
        assert await page.locator("#trainer-table tbody td:nth-child(3)").inner_text() == "webgpu"
        workers = system.runtime(project["id"]).workers
        await eventually(lambda: any(w.info.kind == "browser" for w in workers.values()), timeout=30, what="the tab joins")
        info = next(w.info for w in workers.values() if w.info.kind == "browser")
        assert (info.engine, "swiftshader" in info.adapter, info.examples_per_s > 0) == ("webgpu", True, True), info

        reached = """([goal, limit]) => {
            const figure = (id) => Number(document.getElementById(id).dataset.value ?? NaN);
            return figure('f-accuracy') >= goal || figure('f-iteration') > limit;
        }"""
        await dashboard.page.wait_for_function(reached, arg=[GOAL_ACCURACY, MAX_ITERATIONS], timeout=TRAINING_TIMEOUT_MS, polling=1000)
        history = (await system.api.get(f"/api/projects/{project['id']}/metrics")).json()
        evaluated = [m for m in history if m["test_accuracy"] is not None]
        assert evaluated and max(m["test_accuracy"] for m in evaluated) >= GOAL_ACCURACY, evaluated[-3:]
        print(f"\nWebGPU (SwiftShader) volunteer: test accuracy {evaluated[-1]['test_accuracy']:.3f} "
              f"at iteration {evaluated[-1]['iteration']}; calibrated {info.examples_per_s:.1f} examples/s")
        volunteer.assert_no_console_errors()
    finally:
        await volunteer_context.close()
        await researcher_context.close()


async def test_a_missing_kernels_wasm_is_reported_not_hidden(system, browser):
    project = await system.create_project(name="no wasm")
    volunteer_context, researcher_context = await new_context(browser), await new_context(browser, token=TOKEN)
    await volunteer_context.route("**/engine/kernels*.wasm", lambda route: route.fulfill(status=404, body="not here"))
    try:
        volunteer = await open_page(volunteer_context, f"{system.master_url}/?project={project['id']}&engine=wasm")
        page = volunteer.page
        await page.wait_for_function("!document.getElementById('contribute').disabled")
        await page.fill("#trainers", "1")
        await page.click("#contribute")
        expected = "js-fallback (kernels.wasm failed: 404)"
        workers = system.runtime(project["id"]).workers
        await eventually(lambda: any(w.info.engine == expected for w in workers.values()), timeout=60,
                         what="hello's engine names the failed kernels.wasm")
        await page.wait_for_function("document.getElementById('connection').dataset.engineFallback === 'true'")
        assert "kernels.wasm failed: 404" in await page.locator("#connection").inner_text()
        dashboard = (await open_page(researcher_context, f"{system.master_url}/dashboard.html?project={project['id']}")).page
        cell = dashboard.locator(f'#workers tbody td[data-engine="{expected}"]')
        await cell.wait_for(timeout=30_000)
        assert (await cell.inner_text()).startswith("⚠ js-fallback")
        assert "check the deployment" in await cell.get_attribute("title")
        volunteer.assert_no_console_errors(refused="kernels.wasm")
    finally:
        await volunteer_context.close()
        await researcher_context.close()
