// The engine choice without a GPU: the volunteer's choice is validated, "js"
// gives plain JS, "wasm" the faster of relaxed and strict SIMD (both calibrated
// where relaxed SIMD exists), "auto" without WebGPU says why it used the CPU.
// (WebGPU's side, forced and lost, is in engine_webgpu.test.mjs.)
import v8 from "node:v8";
import { test } from "node:test";
import assert from "node:assert/strict";
import { chooseEngine, parseEngineChoice, calibrate } from "../../mlitb/static/engine/choose.js";
import { createNet } from "../../mlitb/static/engine/net.js";

v8.setFlagsFromString("--experimental-wasm-relaxed-simd");

const NET = [
  { type: "input", out_sx: 8, out_sy: 8, out_depth: 1 },
  { type: "conv", sx: 3, filters: 4, pad: 1, activation: "relu" },
  { type: "pool", sx: 2 },
  { type: "softmax", num_classes: 3 },
];

test("an unknown engine choice is refused with the choices", () => {
  assert.throws(() => parseEngineChoice("cuda"), /engine must be one of auto, webgpu, wasm, js, got 'cuda'/);
  assert.equal(parseEngineChoice("WebGPU"), "webgpu");
  assert.equal(parseEngineChoice(undefined), "auto");
});

test("js is plain JS, calibrated", async () => {
  const r = await chooseEngine(NET, { choice: "js", batch: 4 });
  assert.equal(r.engine, "js");
  assert.equal(r.net.backend, "js");
  assert.ok(r.examplesPerSecond > 0);
});

test("wasm keeps the faster of relaxed and strict SIMD, and says so when strict wins", async () => {
  const r = await chooseEngine(NET, { choice: "wasm", batch: 4 });
  assert.ok(["wasm-relaxed-simd", "wasm-simd"].includes(r.engine), r.engine);
  assert.equal(r.net.backend, r.engine);
  if (r.engine === "wasm-simd") assert.match(r.notes.join(";"), /strict SIMD \d+\/s > relaxed SIMD \d+\/s/);
});

test("auto without WebGPU trains on the CPU engine and gives the reason", async () => {
  const r = await chooseEngine(NET, { choice: "auto", batch: 4 });
  assert.ok(r.engine.startsWith("wasm"), r.engine);
  assert.equal(r.adapter, "");
  assert.match(r.notes.join(";"), /WebGPU: no WebGPU in this browser/);
});

test("calibration measures the net's own gradient at the batch asked", async () => {
  const net = await createNet(NET, { simd: false });
  const calls = [];
  const counting = { ...net, gradient: (...args) => { calls.push(args[3]); return net.gradient(...args); } };
  let t = 0;
  const rate = await calibrate(counting, 5, () => (t += 50)); // a clock that moves 50 ms per reading
  assert.ok(calls.length >= 3 && calls.every((n) => n === 5), calls.join(","));
  assert.ok(rate > 0 && Number.isFinite(rate));
});
