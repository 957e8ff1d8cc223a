// Examples/s of our WebGPU engine (Dawn for Node) and our WASM SIMD engine
// (one thread) on the same nets and batches, printed as one JSON line.
//   DAWN=./dawn.node node bench/gpu/engines.mjs [seconds] [batches]
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { openGpu, createGpuNet } from "../../mlitb/static/engine/gpu-net.js";
import { createNet } from "../../mlitb/static/engine/net.js";

const { create, globals } = process.env.DAWN ? createRequire(import.meta.url)(process.env.DAWN) : await import("webgpu");
Object.assign(globalThis, globals);
const seconds = Number(process.argv[2] ?? 2);
const batches = (process.argv[3] ?? "64,256").split(",").map(Number);
const read = (path) => JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8"));
const nets = { ...read("../nets.json"), ...read("./nets.json") };
const now = () => performance.now();

async function rate(net, batch) {
  const size = net.inputShape.reduce((a, b) => a * b);
  let s = 12345;
  const random = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296);
  const x = Float32Array.from({ length: batch * size }, random);
  const labels = Int32Array.from({ length: batch }, () => Math.floor(random() * net.numClasses));
  const params = net.initParams(1), sum = new Float32Array(net.paramCount);
  const step = async () => { const g = await net.gradient(params, x, labels, batch); for (let i = 0; i < sum.length; i++) sum[i] += g.gradSum[i]; };
  for (let t = now(); now() - t < 300;) await step();
  const rates = [];
  for (let round = 0; round < 5; round++) {
    let done = 0;
    const t = now();
    while (now() - t < (seconds * 1000) / 5) { await step(); done += batch; }
    rates.push((done * 1000) / (now() - t));
  }
  return Math.max(...rates);
}

const gpu = await openGpu({ gpu: create([]), allowFallback: process.env.ALLOW_FALLBACK === "1" });
const out = { adapter: gpu.description ?? null, fallback: gpu.fallback ?? null, error: gpu.error ?? null, rates: {} };
for (const [name, defs] of Object.entries(nets)) {
  for (const batch of batches) {
    if (!gpu.error) {
      const net = await createGpuNet(defs, { device: gpu.device, maxBatch: Math.max(...batches) });
      out.rates[`${name}/webgpu/${batch}`] = await rate(net, batch);
    }
    if (process.env.SKIP_WASM !== "1") out.rates[`${name}/wasm-simd/${batch}`] = await rate(await createNet(defs, { simd: true }), batch);
  }
}
console.log(JSON.stringify(out));
process.exit(0);
