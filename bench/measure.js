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
