// Run by engine_webgpu.test.mjs in a child node whose environment points the
// Vulkan loader at Chromium's SwiftShader (the loader reads it at start-up):
// the WebGPU engine on every parity vector, then printed as one JSON line.
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { openGpu, createGpuNet } from "../../mlitb/static/engine/gpu-net.js";
import { createNet } from "../../mlitb/static/engine/net.js";
import { mulberry32 } from "../../mlitb/static/engine/rng.js";

// DAWN=path/to/dawn.node (the GPU machine, no node_modules there) or npm's webgpu
const { create, globals } = process.env.DAWN ? createRequire(import.meta.url)(process.env.DAWN) : await import("webgpu");
Object.assign(globalThis, globals);
const dir = new URL("../vectors/", import.meta.url);
const floats = (b64) => { const b = Buffer.from(b64, "base64"); return new Float32Array(b.buffer, b.byteOffset, b.length / 4).slice(); };
const norm = (a) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
const relError = (a, b) => norm(a.map((v, i) => v - b[i])) / Math.max(norm(b), 1e-12);
const maxAbsDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

const gpu = await openGpu({ gpu: create([]), allowFallback: true });
if (gpu.error) { console.log(JSON.stringify({ error: gpu.error })); process.exit(0); }
const report = { description: gpu.description, fallback: gpu.fallback, vectors: {} };
const maxBatch = Number(process.env.MAX_BATCH ?? 3);
for (const file of readdirSync(dir).filter((n) => n.endsWith(".json")).sort()) {
  const v = JSON.parse(readFileSync(new URL(file, dir), "utf8"));
  try {
    const net = await createGpuNet(v.layers, { device: gpu.device, maxBatch });
    const params = floats(v.params), x = floats(v.x), want = v.expected;
    const g = await net.gradient(params, x, v.labels, v.n, { seed: v.seed });
    const probs = await net.predict(params, x, v.n);
    report.vectors[file] = {
      paramCount: net.paramCount, wantParamCount: v.param_count ?? net.paramCount,
      count: g.count, wantCount: want.count, correct: g.correct, wantCorrect: want.correct,
      loss: g.lossSum, wantLoss: want.loss_sum,
      gradRelError: relError(g.gradSum, floats(want.grad_sum)),
      probsMaxDiff: probs.length === floats(want.probs).length ? maxAbsDiff(probs, floats(want.probs)) : Infinity,
    };
  } catch (e) {
    report.vectors[file] = { error: e.stack ?? String(e) };
  }
}
// every layer type in one net, one whole-batch chunk, against the WASM engine
const EVERYTHING = [
  { type: "input", out_sx: 7, out_sy: 6, out_depth: 3 },
  { type: "conv", sx: 3, sy: 2, filters: 5, stride: 2, pad: 1, activation: "tanh" },
  { type: "pool", sx: 2, stride: 1, pad: 1 },
  { type: "conv", sx: 1, filters: 9, activation: "relu", drop_prob: 0.3 },
  { type: "fc", num_neurons: 13, activation: "sigmoid" },
  { type: "dropout", drop_prob: 0.2 },
  { type: "fc", num_neurons: 6 },
  { type: "relu" },
  { type: "softmax", num_classes: 3 },
];
{
  const n = 37, u = mulberry32(5);
  const cpu = await createNet(EVERYTHING, { simd: true });
  const net = await createGpuNet(EVERYTHING, { device: gpu.device, maxBatch: 64 });
  const params = cpu.initParams(3);
  const x = Float32Array.from({ length: n * 126 }, () => u() * 2 - 1);
  const labels = Array.from({ length: n }, () => Math.floor(u() * 3));
  const want = cpu.gradient(params, x, labels, n, { seed: 99 });
  const got = await net.gradient(params, x, labels, n, { seed: 99 });
  const probs = await net.predict(params, x, n);
  report.everything = {
    gradRelError: relError(got.gradSum, want.gradSum), loss: got.lossSum, wantLoss: want.lossSum,
    correct: got.correct, wantCorrect: want.correct,
    probsMaxDiff: maxAbsDiff(probs, cpu.predict(params, x, n)),
  };
  // bad input is refused with the reason, before anything reaches the GPU
  const refusals = [];
  for (const [what, call] of [["labels", () => net.gradient(params, x, [7], 1)], ["params", () => net.gradient(params.slice(1), x, labels, 2)]]) {
    try { await call(); refusals.push(`${what}: accepted`); } catch (e) { refusals.push(`${what}: ${e.message}`); }
  }
  report.refusals = refusals;
}
// the engine choice: auto refuses SwiftShader (a fallback adapter), "webgpu" forces it,
// and a lost device hands the work to the WASM engine, the call redone there
{
  const { chooseEngine } = await import("../../mlitb/static/engine/choose.js");
  const auto = await chooseEngine(EVERYTHING, { gpu: gpu.gpu, choice: "auto", batch: 8 });
  report.auto = { engine: auto.engine, notes: auto.notes, rate: auto.examplesPerSecond };
  const changes = [];
  const forced = await chooseEngine(EVERYTHING, { gpu: gpu.gpu, choice: "webgpu", batch: 8, onChange: (engine, why) => changes.push([engine, why]) });
  const n = 9, u = mulberry32(11), params = forced.net.initParams(4);
  const x = Float32Array.from({ length: n * 126 }, () => u() * 2 - 1);
  const labels = Array.from({ length: n }, () => Math.floor(u() * 3));
  const onGpu = await forced.net.gradient(params, x, labels, n, { seed: 5 });
  const backendBefore = forced.net.backend;
  forced.net.gpu.destroy();
  const onCpu = await forced.net.gradient(params, x, labels, n, { seed: 5 });
  report.forced = {
    engine: forced.engine, adapter: forced.adapter, rate: forced.examplesPerSecond, backendBefore,
    backendAfter: forced.net.backend, changes, fallbackReason: forced.net.fallbackReason,
    gradRelError: relError(onCpu.gradSum, onGpu.gradSum),
  };
}
console.log(JSON.stringify(report));
process.exit(0);
