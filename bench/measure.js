// Examples/s of net.gradient (forward + backward, gradients summed) at a fixed batch,
// the same code in Node and in a Web Worker.
import { createNet } from "../mlitb/static/engine/net.js";

const now = () => performance.now();

export async function measure(defs, { simd, relaxed = true, batch = 64, seconds = 1.5 }) {
  const net = await createNet(defs, { simd, relaxed });
  const size = net.inputShape.reduce((a, b) => a * b);
  let s = 12345;
  const random = () => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296);
  const x = Float32Array.from({ length: batch * size }, random);
  const labels = Int32Array.from({ length: batch }, () => Math.floor(random() * net.numClasses));
  const params = net.initParams(1);
  const sum = new Float32Array(net.paramCount);
  const step = () => { const g = net.gradient(params, x, labels, batch); for (let i = 0; i < sum.length; i++) sum[i] += g.gradSum[i]; };
  for (let t = now(); now() - t < 300;) step();
  const rates = [];
  for (let round = 0; round < 5; round++) {
    let done = 0;
    const t = now();
    while (now() - t < (seconds * 1000) / 5) { step(); done += batch; }
    rates.push((done * 1000) / (now() - t));
  }
  return { backend: net.backend, examplesPerSecond: Math.max(...rates) };
}

export async function measureAll(nets, seconds) {
  const out = {};
  for (const [name, defs] of Object.entries(nets)) {
    // relaxed SIMD (where the runtime has it), strict SIMD, plain JS; keyed by the backend that ran
    for (const options of [{ simd: true }, { simd: true, relaxed: false }, { simd: false }]) {
      const r = await measure(defs, { ...options, seconds });
      out[`${name}/${r.backend}`] = r.examplesPerSecond;
    }
  }
  return out;
}

// The WebGPU engine where this runtime has an adapter (a fallback one too: SwiftShader
// in CI is a correctness path, slow), at the same batch; at least two timed calls.
export async function measureGpu(nets, seconds, { gpu, batch = 64 } = {}) {
  const { openGpu, createGpuNet } = await import("../mlitb/static/engine/gpu-net.js");
  const opened = await openGpu({ gpu, allowFallback: true });
  if (opened.error) return { error: opened.error };
  const out = { adapter: opened.description, fallback: opened.fallback, rates: {} };
  for (const [name, defs] of Object.entries(nets)) {
    const net = await createGpuNet(defs, { device: opened.device, maxBatch: batch });
    const size = net.inputShape.reduce((a, b) => a * b);
    const x = Float32Array.from({ length: batch * size }, (_, i) => (i % 255) / 255);
    const labels = Int32Array.from({ length: batch }, (_, i) => i % net.numClasses);
    const params = net.initParams(1);
    await net.gradient(params, x, labels, batch);
    let calls = 0;
    const t = now();
    while (calls < 2 || now() - t < seconds * 1000) { await net.gradient(params, x, labels, batch); calls++; }
    out.rates[name] = (calls * batch * 1000) / (now() - t);
  }
  return out;
}

// Worst gradient relative error of the WebGPU engine over parity vectors ({name: vector}).
export async function gpuParity(vectors, { gpu } = {}) {
  const { openGpu, createGpuNet } = await import("../mlitb/static/engine/gpu-net.js");
  const opened = await openGpu({ gpu, allowFallback: true });
  if (opened.error) return { error: opened.error };
  const floats = (b64) => { const s = atob(b64), b = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i); return new Float32Array(b.buffer); };
  const norm = (a) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
  let worst = 0;
  for (const v of Object.values(vectors)) {
    const net = await createGpuNet(v.layers, { device: opened.device, maxBatch: 3 });
    const g = await net.gradient(floats(v.params), floats(v.x), v.labels, v.n, { seed: v.seed });
    const want = floats(v.expected.grad_sum);
    worst = Math.max(worst, norm(g.gradSum.map((x, i) => x - want[i])) / Math.max(norm(want), 1e-12));
  }
  return { worst, vectors: Object.keys(vectors).length };
}
