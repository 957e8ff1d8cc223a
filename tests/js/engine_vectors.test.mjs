// The JS engine against the numpy engine's parity vectors, on every backend:
// plain JS, strict WASM SIMD and relaxed SIMD (fused multiply-add; V8 in Node 20
// has it behind a flag, which is set before any module compiles).
import v8 from "node:v8";
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { createNet } from "../../mlitb/static/engine/net.js";
import { hasRelaxedSimd } from "../../mlitb/static/engine/heap.js";

v8.setFlagsFromString("--experimental-wasm-relaxed-simd");

const dir = new URL("../vectors/", import.meta.url);
const files = readdirSync(dir).filter((name) => name.endsWith(".json")).sort();
const floats = (b64) => { const bytes = Buffer.from(b64, "base64"); return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4).slice(); };
const norm = (a) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
const relError = (a, b) => norm(a.map((v, i) => v - b[i])) / Math.max(norm(b), 1e-12);

test("there are parity vectors to check", () => assert.ok(files.length >= 5, files.join(",")));

test("relaxed SIMD is detected here (V8's flag set)", () => assert.equal(hasRelaxedSimd(), true));

const BACKENDS = [["js", { simd: false }], ["wasm-simd", { simd: true, relaxed: false }], ["wasm-relaxed-simd", { simd: true }]];
for (const [backend, options] of BACKENDS) {
  for (const file of files) {
    test(`${file} (${backend})`, async () => {
      const v = JSON.parse(readFileSync(new URL(file, dir), "utf8"));
      const net = await createNet(v.layers, { ...options, chunk: 3 });
      assert.equal(net.backend, backend);
      if (v.param_count !== undefined) assert.equal(net.paramCount, v.param_count);
      const params = floats(v.params), x = floats(v.x), want = v.expected;
      const g = net.gradient(params, x, v.labels, v.n, { seed: v.seed });
      assert.equal(g.count, want.count);
      assert.equal(g.correct, want.correct);
      assert.ok(Math.abs(g.lossSum - want.loss_sum) <= 1e-5 * Math.max(1, Math.abs(want.loss_sum)), `loss ${g.lossSum} vs ${want.loss_sum}`);
      const err = relError(g.gradSum, floats(want.grad_sum));
      assert.ok(err <= 1e-4, `gradient relative error ${err}`);
      const probs = net.predict(params, x, v.n), wantProbs = floats(want.probs);
      assert.equal(probs.length, wantProbs.length);
      probs.forEach((p, i) => assert.ok(Math.abs(p - wantProbs[i]) <= 1e-5, `probs[${i}] ${p} vs ${wantProbs[i]}`));
    });
  }
}
