// The WebGPU engine on SwiftShader (Chromium's Vulkan CPU driver, no GPU
// needed): every parity vector within 1e-4 of the numpy engine, chunked
// (maxBatch 3), and a net with every layer type equal to the WASM engine.
// The work runs in a child node (webgpu_child.mjs): the Vulkan loader reads
// its environment when the process starts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const CHROMIUM = "/usr/lib/chromium";
const vectors = readdirSync(new URL("../vectors/", import.meta.url)).filter((n) => n.endsWith(".json")).sort();

function runChild() {
  const child = spawnSync(process.execPath, [fileURLToPath(new URL("webgpu_child.mjs", import.meta.url))], {
    env: {
      ...process.env,
      VK_ICD_FILENAMES: `${CHROMIUM}/vk_swiftshader_icd.json`,
      LD_LIBRARY_PATH: [CHROMIUM, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":"),
    },
    encoding: "utf8",
    timeout: 600_000,
  });
  const line = child.stdout.trim().split("\n").at(-1);
  assert.ok(line?.startsWith("{"), `the WebGPU child printed no report (status ${child.status}, signal ${child.signal}):\n${child.stderr.slice(-2000)}`);
  return JSON.parse(line);
}

const report = runChild();

test("a SwiftShader WebGPU adapter is found (needs Debian's chromium and npm's webgpu)", () => {
  assert.equal(report.error, undefined, report.error);
  assert.match(report.description, /swiftshader/i);
  assert.equal(report.fallback, true);
});

for (const file of vectors) {
  test(`${file} on the WebGPU engine`, () => {
    const r = report.vectors?.[file];
    assert.ok(r, `no result for ${file}`);
    assert.equal(r.error, undefined, r.error);
    assert.equal(r.paramCount, r.wantParamCount);
    assert.equal(r.count, r.wantCount);
    assert.equal(r.correct, r.wantCorrect);
    assert.ok(Math.abs(r.loss - r.wantLoss) <= 1e-5 * Math.max(1, Math.abs(r.wantLoss)), `loss ${r.loss} vs ${r.wantLoss}`);
    assert.ok(r.gradRelError <= 1e-4, `gradient relative error ${r.gradRelError}`);
    assert.ok(r.probsMaxDiff <= 1e-5, `probabilities differ by ${r.probsMaxDiff}`);
  });
}

test("every layer type in one whole-batch chunk equals the WASM engine, dropout masks included", () => {
  const r = report.everything;
  assert.ok(r.gradRelError <= 1e-4, `gradient relative error ${r.gradRelError}`);
  assert.equal(r.correct, r.wantCorrect);
  assert.ok(Math.abs(r.loss - r.wantLoss) <= 1e-5 * Math.max(1, Math.abs(r.wantLoss)), `loss ${r.loss} vs ${r.wantLoss}`);
  assert.ok(r.probsMaxDiff <= 1e-5, `probabilities differ by ${r.probsMaxDiff}`);
});

test("bad labels and params are refused with the reason", () => {
  assert.match(report.refusals[0], /^labels: labels must be in \[0, 3\), got 7 at 0/);
  assert.match(report.refusals[1], /^params: params must have \d+ floats, got \d+/);
});

test("auto choice refuses a fallback adapter and says why; the volunteer can force WebGPU", () => {
  assert.equal(report.auto.engine, "wasm-simd");
  assert.match(report.auto.notes.join("; "), /only a fallback adapter \(.*swiftshader/i);
  assert.ok(report.auto.rate > 0);
  assert.equal(report.forced.engine, "webgpu");
  assert.match(report.forced.adapter, /swiftshader/i);
  assert.ok(report.forced.rate > 0);
});

test("a lost GPU device hands over to the WASM engine, which redoes the call", () => {
  const r = report.forced;
  assert.equal(r.backendBefore, "webgpu");
  assert.equal(r.backendAfter, "wasm-simd");
  assert.equal(r.changes.length, 1, JSON.stringify(r.changes));
  assert.equal(r.changes[0][0], "wasm-simd");
  assert.match(r.fallbackReason, /lost|destroy/i);
  assert.ok(r.gradRelError <= 1e-4, `the CPU engine's gradient differs by ${r.gradRelError}`);
});
