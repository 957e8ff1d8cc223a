// A classifier from ConvNetJS layer_defs, computed in batches over one heap.
// Activations are interleaved (example, y, x, depth); conv and fc are one
// implicit GEMM kernel set, processed in chunks of examples.

import { expand, SpecError } from "./spec.js";
import { buildLayout, initParams, paramCount } from "./layout.js";
import { openHeap } from "./heap.js";
import { softmaxCrossEntropy } from "./loss.js";
import { mulberry32 } from "./rng.js";

export { SpecError };

const ELEMENTWISE = new Set(["relu", "tanh", "sigmoid", "dropout"]);
const OUTPUT_UNUSED_BY_BACKWARD = new Set(["conv", "fc", "pool"]);

// conv and fc as one implicit GEMM: fc is a 1×1 window over a 1×1 input of depth num_inputs
function geometry(l) {
  if (l.type === "fc") return { hp: 1, wp: 1, c: l.inSize, sy: 1, run: l.inSize, rowStride: 0, stride: 1, pad: 0 };
  const [h, w, c] = l.inShape, hp = h + 2 * l.pad, wp = w + 2 * l.pad;
  return { hp, wp, c, sy: l.sy, run: l.sx * c, rowStride: wp * c, stride: l.stride, pad: l.pad };
}

// Byte offsets of everything one chunk of `chunk` examples needs.
function planMemory(layers, layout, chunk, base) {
  let top = base;
  const alloc = (words) => { const at = top; top += Math.ceil(words / 4) * 16 + 32; return at; };
  const P = paramCount(layout);
  const params = alloc(P), grads = alloc(P);
  const first = layers.findIndex((l) => l.type === "conv" || l.type === "fc");
  const steps = layers.map(() => ({}));
  let dxpSize = 0;
  layers.forEach((layer, n) => {
    const s = steps[n];
    const inPlace = n > 0 && (ELEMENTWISE.has(layer.type) || layer.type === "softmax") && OUTPUT_UNUSED_BY_BACKWARD.has(layers[n - 1].type);
    s.out = inPlace ? steps[n - 1].out : alloc(chunk * layer.outSize);
    if (layer.type === "conv" || layer.type === "fc") {
      const w = layout.find((b) => b.layer === n && b.kind === "weights");
      const g = (s.geometry = geometry(layer));
      const F = layer.outShape[2], padded = chunk * g.hp * g.wp * g.c;
      s.weights = params + 4 * w.offset;
      s.bias = s.weights + 4 * w.size;
      s.dWeights = grads + 4 * w.offset;
      s.dBias = s.dWeights + 4 * w.size;
      s.packed = alloc(Math.ceil(F / 8) * 8 * w.size / F);
      s.dPacked = alloc(Math.ceil(F / 8) * 8 * w.size / F);
      s.rows = alloc(chunk * layer.outShape[0] * layer.outShape[1]);
      s.xp = g.pad ? alloc(padded) : steps[n - 1].out;
      if (g.pad && n > first) dxpSize = Math.max(dxpSize, padded);
    }
    if (layer.type === "pool") s.arg = alloc(chunk * layer.outSize);
    if (layer.type === "dropout") s.mask = alloc(chunk * layer.outSize);
  });
  for (let n = layers.length - 2; n >= first; n--) {
    steps[n].dout = ELEMENTWISE.has(layers[n + 1].type) ? steps[n + 1].dout : alloc(chunk * layers[n].outSize);
  }
  const dxp = alloc(dxpSize);
  return { params, grads, steps, first, dxp, bytes: top };
}

// relaxed: false keeps the strict SIMD kernels where relaxed SIMD exists (fused multiply-add
// rounds once, so its sums differ from the strict ones in the last bits)
export async function createNet(layerDefs, { simd = true, relaxed = true, chunk = 64 } = {}) {
  const layers = expand(layerDefs);
  const layout = buildLayout(layers);
  const P = paramCount(layout);
  const heap = await openHeap(simd, { relaxed });
  const plan = planMemory(layers, layout, chunk, heap.base);
  const k = heap.reserve(plan.bytes);
  const { f } = k;
  const { steps, first } = plan;
  const last = layers.length - 1;
  const inSize = layers[0].outSize, numClasses = layers[last].outSize;
  const dropoutSizes = layers.filter((l) => l.type === "dropout").map((l) => l.outSize);
  const parametric = layers.map((l, n) => n).filter((n) => steps[n].geometry);
  for (const n of parametric) {
    const g = steps[n].geometry, [oh, ow] = layers[n].outShape;
    k.convRows(chunk, g.hp, g.wp, g.c, g.stride, oh, ow, steps[n].rows);
  }
  const K = (n) => steps[n].geometry.sy * steps[n].geometry.run;

  // Read once per params array (a new array for new values): repacking is a fixed cost per call otherwise.
  let loaded = null;
  function loadParams(params) {
    if (!params || params.length !== P) throw new Error(`params must have ${P} floats, got ${params?.length}`);
    if (params === loaded) return;
    loaded = params;
    f.set(params, plan.params >> 2);
    for (const n of parametric) k.packWeights(steps[n].weights, layers[n].outShape[2], K(n), steps[n].packed);
  }

  function checkBatch(x, n) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`n must be a non-negative integer, got ${n}`);
    if (!x || x.length < n * inSize) throw new Error(`x must hold ${n}×${inSize} floats, got ${x?.length}`);
  }

  // Forward over examples [start, start+n) of the call; dropout draws from the call's one stream.
  function forward(x, start, n, total, seed, training) {
    f.set(x.subarray(start * inSize, (start + n) * inSize), steps[0].out >> 2);
    let dropoutIndex = 0, drawn = 0;
    for (let i = 1; i < last; i++) {
      const layer = layers[i], s = steps[i], input = steps[i - 1].out, count = n * layer.outSize;
      const [h, w, c] = layer.inShape, [oh, ow, od] = layer.outShape;
      switch (layer.type) {
        case "conv":
        case "fc": {
          const g = s.geometry;
          if (g.pad) k.padCopy(input, n, h, w, c, g.pad, s.xp);
          k.convForward(s.xp, s.rows, n * oh * ow, g.sy, g.run, g.rowStride, s.packed, od, s.bias, s.out);
          break;
        }
        case "pool":
          k.poolForward(input, n, h, w, c, layer.sy, layer.sx, layer.stride, layer.pad, oh, ow, s.out, s.arg);
          break;
        case "relu": k.reluForward(input, s.out, count); break;
        case "tanh": k.tanhForward(input, s.out, count); break;
        case "sigmoid": k.sigmoidForward(input, s.out, count); break;
        case "dropout": {
          const size = dropoutSizes[dropoutIndex++];
          if (training) {
            const uniform = mulberry32(seed, drawn + start * size);
            const p = layer.dropProb, keep = Math.fround(1 / (1 - p)), mask = s.mask >> 2;
            for (let j = 0; j < count; j++) f[mask + j] = uniform() < p ? 0 : keep;
            k.multiply(input, s.mask, s.out, count);
          } else {
            f.copyWithin(s.out >> 2, input >> 2, (input >> 2) + count);
          }
          drawn += total * size;
          break;
        }
      }
    }
  }

  function backward(n) {
    for (let i = last - 1; i >= first; i--) {
      const layer = layers[i], s = steps[i], dy = s.dout, input = steps[i - 1].out, count = n * layer.outSize;
      const dx = i > first ? steps[i - 1].dout : 0;
      const [h, w, c] = layer.inShape, [oh, ow, od] = layer.outShape;
      switch (layer.type) {
        case "conv":
        case "fc": {
          const g = s.geometry, rows = n * oh * ow;
          k.convWeightGrad(s.xp, s.rows, rows, g.sy, g.run, g.rowStride, dy, od, s.dPacked);
          k.colSums(dy, rows, od, s.dBias);
          if (!dx) break;
          const target = g.pad ? plan.dxp : dx;
          f.fill(0, target >> 2, (target >> 2) + n * g.hp * g.wp * g.c);
          k.convInputGrad(dy, od, s.weights, s.rows, rows, g.sy, g.run, g.rowStride, target);
          if (g.pad) k.cropCopy(plan.dxp, n, h, w, c, g.pad, dx);
          break;
        }
        case "pool": k.poolBackward(dy, s.arg, count, dx, n * layer.inSize); break;
        case "relu": k.reluBackward(s.out, dy, dx, count); break;
        case "tanh": k.tanhBackward(s.out, dy, dx, count); break;
        case "sigmoid": k.sigmoidBackward(s.out, dy, dx, count); break;
        case "dropout": k.multiply(dy, s.mask, dx, count); break;
      }
    }
  }

  function gradient(params, x, labels, n, { seed = 0 } = {}) {
    checkBatch(x, n);
    if (!labels || labels.length < n) throw new Error(`labels must hold ${n} integers, got ${labels?.length}`);
    for (let e = 0; e < n; e++) {
      const y = labels[e];
      if (!Number.isInteger(y) || y < 0 || y >= numClasses) throw new Error(`labels must be in [0, ${numClasses}), got ${y} at ${e}`);
    }
    loadParams(params);
    f.fill(0, plan.grads >> 2, (plan.grads >> 2) + P);
    for (const n of parametric) f.fill(0, steps[n].dPacked >> 2, (steps[n].dPacked >> 2) + Math.ceil(layers[n].outShape[2] / 8) * 8 * K(n));
    let lossSum = 0, correct = 0;
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      forward(x, start, m, n, seed, true);
      const r = softmaxCrossEntropy(f, steps[last - 1].out, steps[last].out, m, numClasses, labels, steps[last - 1].dout, start);
      lossSum += r.lossSum;
      correct += r.correct;
      backward(m);
    }
    for (const n of parametric) k.unpackAddWeights(steps[n].dPacked, layers[n].outShape[2], K(n), steps[n].dWeights);
    return { gradSum: f.slice(plan.grads >> 2, (plan.grads >> 2) + P), count: n, lossSum, correct };
  }

  function predict(params, x, n) {
    checkBatch(x, n);
    loadParams(params);
    const probs = new Float32Array(n * numClasses);
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      forward(x, start, m, n, 0, false);
      const out = steps[last].out;
      softmaxCrossEntropy(f, steps[last - 1].out, out, m, numClasses, null, 0);
      probs.set(f.subarray(out >> 2, (out >> 2) + m * numClasses), start * numClasses);
    }
    return probs;
  }

  return {
    backend: heap.kind,
    layers,
    layout,
    paramCount: P,
    numClasses,
    inputShape: [...layers[0].outShape],
    initParams: (seed) => initParams(layers, layout, seed),
    gradient,
    predict,
  };
}
