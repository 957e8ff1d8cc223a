// Helper of bench/verify_tolerance.py: the JS engine (plain JS and WASM SIMD) sums a work's batch gradients.
import { readFileSync, writeFileSync } from "node:fs";
import { createNet } from "../mlitb/static/engine/net.js";
const dir = process.argv[2];
const spec = JSON.parse(readFileSync(`${dir}/spec.json`));
const f32 = (name) => { const b = readFileSync(name); return new Float32Array(b.buffer, b.byteOffset, b.length / 4).slice(); };
const params = f32(`${dir}/params.bin`), x = f32(`${dir}/x.bin`);
const labels = Int32Array.from(spec.labels);
const out = {};
for (const simd of [false, true]) {
  const net = await createNet(spec.layers, { simd });
  const size = x.length / labels.length;
  const sum = new Float32Array(net.paramCount);
  let loss = 0, correct = 0, p = 0;
  for (let b = 0; b < spec.batches.length; b++) {
    const n = spec.batches[b];
    const g = net.gradient(params, x.subarray(p * size, (p + n) * size), labels.subarray(p, p + n), n, { seed: spec.seeds[b] });
    for (let i = 0; i < sum.length; i++) sum[i] += g.gradSum[i];
    loss += g.lossSum; correct += g.correct; p += n;
  }
  writeFileSync(`${dir}/grad_${simd}.bin`, Buffer.from(sum.buffer));
  out[simd] = { loss, correct, backend: net.backend };
}
console.log(JSON.stringify(out));
