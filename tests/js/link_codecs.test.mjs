// The trainer's codec state and local steps, against frames and numbers the Python side produced.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { LinkCodecs, OFFER, runLocalSteps } from "../../mlitb/static/js/link-codecs.js";
import { decodeVector } from "../../mlitb/static/js/codecs.js";

const v = JSON.parse(readFileSync(new URL("../vectors/codecs/codecs.json", import.meta.url), "utf8"));
const bytes = (b64) => new Uint8Array(Buffer.from(b64, "base64"));
const floats = (b64) => { const b = Buffer.from(b64, "base64"); return new Float32Array(b.buffer, b.byteOffset, b.length / 4).slice(); };

test("offers every codec", () => {
  assert.deepEqual(OFFER.results, ["f32", "f16", "i8", "topk"]);
  assert.deepEqual(OFFER.params, ["f32", "f16", "delta-f16", "delta-i8"]);
});

test("follows the master's delta stream and skips a delta it cannot apply", () => {
  const p = v.params.find((e) => e.codec === "delta-i8");
  const link = new LinkCodecs(300, { result: "i8", params: "delta-i8" });
  p.frames.forEach((f, i) => {
    const got = link.onParams({ iteration: p.iterations[i], codec: f.codec, params: bytes(f.data), base: f.base });
    assert.deepEqual(Array.from(got.values), Array.from(floats(p.held[i])));
  });
  const fresh = new LinkCodecs(300, { result: "i8", params: "delta-i8" });
  const delta = p.frames[1];
  assert.equal(fresh.onParams({ iteration: 5, codec: delta.codec, params: bytes(delta.data), base: delta.base }), null);
  assert.equal(fresh.mismatches, 1);
});

test("refuses a codec it does not know", () => {
  assert.throws(() => new LinkCodecs(3, { result: "zstd" }), /does not know/);
});

test("encodes results through error feedback in the chosen codec", () => {
  const link = new LinkCodecs(300, { result: "topk", topk_ratio: 0.05 });
  const g = floats(v.feedback[0].inputs[0]);
  const { codec, grad } = link.encodeResult(g);
  assert.equal(codec, "topk");
  assert.equal(grad.length, 4 + 8 * 15);
  const back = decodeVector("topk", grad, 300);
  for (let i = 0; i < 300; i++) assert.ok(Math.abs(back[i] + link.feedback.residual[i] - g[i]) < 1e-6);
});

test("local steps equal mlitb.local_steps.run_local_steps on the same parts", async () => {
  // part h's gradient at w: (h + 1) × w + 1, over 2 examples; Python computes the same in float32.
  const part = (w, h) => ({ gradSum: Float32Array.from(w, (x) => 2 * ((h + 1) * x + 1)), count: 2, lossSum: 1, correct: 1 });
  const start = Float32Array.from([0.5, -1.25, 3]);
  const r = await runLocalSteps(part, start, 3, 0.1);
  assert.deepEqual(Array.from(start), [0.5, -1.25, 3]);
  assert.equal(r.count, 6);
  assert.equal(r.lossSum, 3);
  const py = execFileSync("python3", ["-c", `
import numpy as np
from mlitb.local_steps import PartResult, run_local_steps
part = lambda w, h: PartResult((np.float32(2) * (np.float32(h + 1) * w + np.float32(1))).astype(np.float32), 2, 1.0, 1)
print(run_local_steps(part, np.array([0.5, -1.25, 3], np.float32), 3, 0.1).grad_sum.tobytes().hex())
`], { env: { ...process.env, PYTHONPATH: new URL("../..", import.meta.url).pathname } }).toString().trim();
  assert.equal(Buffer.from(r.gradSum.buffer).toString("hex"), py);
});
