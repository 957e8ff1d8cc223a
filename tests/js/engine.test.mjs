// The JS engine on its own: spec errors, layout, finite differences, backends and chunking agree.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createNet, SpecError } from "../../mlitb/static/engine/net.js";
import { mulberry32 } from "../../mlitb/static/engine/rng.js";

const MNIST = [
  { type: "input", out_sx: 28, out_sy: 28, out_depth: 1 },
  { type: "conv", sx: 5, filters: 8, pad: 2, activation: "relu" },
  { type: "pool", sx: 2, stride: 2 },
  { type: "conv", sx: 5, filters: 16, pad: 2, activation: "relu" },
  { type: "pool", sx: 3, stride: 3 },
  { type: "softmax", num_classes: 10 },
];

// every layer type, odd sizes so the SIMD tails run
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

function batch(net, n, seed) {
  const u = mulberry32(seed);
  const size = net.inputShape.reduce((a, b) => a * b);
  return { x: Float32Array.from({ length: n * size }, () => u() * 2 - 1), labels: Array.from({ length: n }, () => Math.floor(u() * net.numClasses)) };
}

const maxAbsDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const maxAbs = (a) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

test("a bad spec names the layer and the field", async () => {
  const cases = [
    [[{ type: "input", out_sx: 2, out_sy: 2, out_depth: 1 }, { type: "conv", filters: 2 }, { type: "softmax", num_classes: 2 }], 1, "sx"],
    [[{ type: "input", out_sx: 2, out_sy: 2, out_depth: 1 }, { type: "fc", num_neurons: 4, activation: "elu" }, { type: "softmax", num_classes: 2 }], 1, "activation"],
    [[{ type: "input", out_sx: 2, out_sy: 2, out_depth: 1 }, { type: "dropout", drop_prob: 1 }, { type: "softmax", num_classes: 2 }], 1, "drop_prob"],
    [[{ type: "input", out_sx: 2, out_sy: 2, out_depth: 1 }, { type: "pool", sx: 2, pad: 2 }, { type: "softmax", num_classes: 2 }], 1, "pad"],
    [[{ type: "input", out_sx: 2, out_sy: 2, out_depth: 1 }, { type: "conv", sx: 5, filters: 1 }, { type: "softmax", num_classes: 2 }], 1, "sy"],
    [[{ type: "input", out_sx: 2, out_depth: 1 }, { type: "softmax", num_classes: 2 }], 0, "out_sy"],
    [[{ type: "input", out_sx: 2, out_sy: 2, out_depth: 1 }, { type: "softmax", num_classes: 1 }], 1, "num_classes"],
    [[{ type: "input", out_sx: 2, out_sy: 2, out_depth: 1 }, { type: "fc", neurons: 3 }, { type: "softmax", num_classes: 2 }], 1, "neurons"],
    [[{ type: "input", out_sx: 2, out_sy: 2, out_depth: 1 }, { type: "lrn" }, { type: "softmax", num_classes: 2 }], 1, "type"],
  ];
  for (const [defs, index, field] of cases) {
    await assert.rejects(createNet(defs, { simd: false }), (e) => {
      assert.ok(e instanceof SpecError, e.message);
      assert.equal(e.index, index, e.message);
      assert.equal(e.field, field, e.message);
      assert.match(e.message, new RegExp(`layer ${index}.*'${field}'`));
      return true;
    });
  }
});

test("the MNIST convnet expands and lays out its parameters as ConvNetJS", async () => {
  const net = await createNet(MNIST, { simd: false });
  assert.deepEqual(net.layers.map((l) => l.type), ["input", "conv", "relu", "pool", "conv", "relu", "pool", "fc", "softmax"]);
  assert.deepEqual(net.layers.map((l) => l.outShape), [[28, 28, 1], [28, 28, 8], [28, 28, 8], [14, 14, 8], [14, 14, 16], [14, 14, 16], [4, 4, 16], [1, 1, 10], [1, 1, 10]]);
  assert.deepEqual(net.layout.map(({ layer, kind, shape, offset, size }) => [layer, kind, shape, offset, size]), [
    [1, "weights", [8, 5, 5, 1], 0, 200], [1, "biases", [8], 200, 8],
    [4, "weights", [16, 5, 5, 8], 208, 3200], [4, "biases", [16], 3408, 16],
    [7, "weights", [10, 256], 3424, 2560], [7, "biases", [10], 5984, 10],
  ]);
  assert.equal(net.paramCount, 5994);
  assert.deepEqual(net.inputShape, [28, 28, 1]);
  assert.equal(net.numClasses, 10);
  const params = net.initParams(7);
  assert.deepEqual(params, net.initParams(7));
  assert.ok(params.subarray(200, 208).every((b) => Math.abs(b - 0.1) < 1e-7), "biases before a relu start at 0.1");
  assert.ok(params.subarray(5984).every((b) => b === 0));
});

// no relu or pool: no kinks, so finite differences are tight
const SMOOTH = EVERYTHING.filter((d) => d.type !== "pool" && d.type !== "relu").map((d) => (d.activation === "relu" ? { ...d, activation: "tanh" } : d));

async function checkFiniteDifferences(defs, simd, eps, tolerance) {
  const net = await createNet(defs, { simd, chunk: 4 });
  const params = net.initParams(3), { x, labels } = batch(net, 5, 11);
  const loss = (p) => net.gradient(p, x, labels, 5, { seed: 42 }).lossSum;
  const g = net.gradient(params, x, labels, 5, { seed: 42 }).gradSum;
  const u = mulberry32(5);
  for (const block of net.layout) {
    const dir = Float32Array.from({ length: block.size }, () => u() - 0.5);
    const plus = params.slice(), minus = params.slice();
    let analytic = 0;
    for (let i = 0; i < block.size; i++) {
      plus[block.offset + i] += eps * dir[i];
      minus[block.offset + i] -= eps * dir[i];
      analytic += g[block.offset + i] * dir[i];
    }
    const numeric = (loss(plus) - loss(minus)) / (2 * eps);
    assert.ok(Math.abs(numeric - analytic) <= tolerance * Math.max(Math.abs(analytic), 0.05),
      `layer ${block.layer} ${block.kind}: numeric ${numeric} vs analytic ${analytic}`);
  }
}

for (const simd of [false, true]) {
  const backend = simd ? "wasm simd" : "plain js";
  test(`gradient matches finite differences, smooth net (${backend})`, () => checkFiniteDifferences(SMOOTH, simd, 1e-2, 3e-3));
  test(`gradient matches finite differences, every layer type (${backend})`, () => checkFiniteDifferences(EVERYTHING, simd, 1e-3, 3e-2));
}

test("wasm simd and plain js agree, and chunking changes nothing (dropout included)", async () => {
  for (const defs of [EVERYTHING, MNIST]) {
    const js = await createNet(defs, { simd: false, chunk: 64 });
    const wasm = await createNet(defs, { simd: true, chunk: 3 });
    assert.equal(wasm.backend, "wasm-simd");
    const params = js.initParams(1), { x, labels } = batch(js, 10, 2);
    const a = js.gradient(params, x, labels, 10, { seed: 9 }), b = wasm.gradient(params, x, labels, 10, { seed: 9 });
    assert.ok(maxAbsDiff(a.gradSum, b.gradSum) <= 1e-5 * maxAbs(a.gradSum), `gradients differ by ${maxAbsDiff(a.gradSum, b.gradSum)}`);
    assert.ok(Math.abs(a.lossSum - b.lossSum) < 1e-5 * a.lossSum);
    assert.equal(a.correct, b.correct);
    assert.equal(a.count, 10);
    assert.ok(maxAbsDiff(js.predict(params, x, 10), wasm.predict(params, x, 10)) < 1e-6);
  }
});

test("dropout follows the seed in training and is off in predict", async () => {
  const net = await createNet(EVERYTHING, { simd: true });
  const params = net.initParams(4), { x, labels } = batch(net, 6, 3);
  const a = net.gradient(params, x, labels, 6, { seed: 1 }), b = net.gradient(params, x, labels, 6, { seed: 1 });
  const c = net.gradient(params, x, labels, 6, { seed: 2 });
  assert.deepEqual(a.gradSum, b.gradSum);
  assert.notDeepEqual(a.gradSum, c.gradSum);
  const probs = net.predict(params, x, 6);
  assert.deepEqual(probs, net.predict(params, x, 6));
  for (let e = 0; e < 6; e++) assert.ok(Math.abs(probs.subarray(e * 3, e * 3 + 3).reduce((s, p) => s + p, 0) - 1) < 1e-6);
});

test("bad batches are refused", async () => {
  const net = await createNet(MNIST, { simd: true });
  const params = net.initParams(1), { x, labels } = batch(net, 2, 1);
  assert.throws(() => net.gradient(params.subarray(1), x, labels, 2), /params must have 5994/);
  assert.throws(() => net.gradient(params, x, labels, 3), /x must hold 3×784/);
  assert.throws(() => net.gradient(params, x, [0, 10], 2), /labels must be in \[0, 10\)/);
  const empty = net.gradient(params, x, labels, 0);
  assert.equal(empty.count, 0);
  assert.ok(empty.gradSum.every((v) => v === 0));
});
