// The WebGPU engine: the same classifier and public interface as net.js
// (gradient and predict return promises here; `await` takes both). Every
// activation and gradient stays on the GPU; parameters are uploaded when the
// params array changes (by identity: the caller gives a new array for new
// values), and one read-back per call brings the gradient sum, the per-example
// losses and hits. Chunks of at most maxBatch examples share fixed buffers.

import { expand, SpecError } from "./spec.js";
import { buildLayout, initParams, paramCount } from "./layout.js";
import * as wgsl from "./wgsl.js";

export { SpecError };

const FLAT_LIMIT = 65535;
const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08, UNIFORM = 0x40, MAP_READ = 0x01;

/**
 * An adapter and device, or { error } saying why not. `gpu` is navigator.gpu
 * in a browser, the `webgpu` package's create([]) in Node.
 */
export async function openGpu({ gpu = globalThis.navigator?.gpu, allowFallback = false } = {}) {
  if (!gpu) return { error: "no WebGPU in this browser" };
  let adapter;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    return { error: `requestAdapter failed: ${e.message}` };
  }
  if (!adapter) return { error: "no WebGPU adapter" };
  const info = adapter.info ?? {};
  const fallback = Boolean(adapter.isFallbackAdapter ?? info.isFallbackAdapter);
  const description = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ").slice(0, 120) || "unknown GPU";
  if (fallback && !allowFallback) return { error: `only a fallback adapter (${description})`, description, fallback };
  const limits = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
    },
  });
  return { gpu, adapter, device, description, fallback }; // gpu held: Dawn-for-Node drops a collected instance
}

export async function createGpuNet(layerDefs, { device, description = "", maxBatch = 256 } = {}) {
  const layers = expand(layerDefs);
  const layout = buildLayout(layers);
  const P = paramCount(layout);
  if (!device) throw new Error("createGpuNet needs a WebGPU device (see openGpu)");
  const last = layers.length - 1;
  const inSize = layers[0].outSize, numClasses = layers[last].outSize;
  const first = layers.findIndex((l) => l.type === "conv" || l.type === "fc");
  const cap = maxBatch;

  let lostReason = null;
  const lost = device.lost.then((info) => {
    lostReason = `GPU device lost (${info.reason ?? "unknown"}): ${info.message ?? ""}`.trim();
    return lostReason;
  });

  device.pushErrorScope("validation");
  device.pushErrorScope("out-of-memory");
  const buffer = (floats, usage = STORAGE | COPY_DST | COPY_SRC) =>
    device.createBuffer({ size: Math.max(16, Math.ceil(floats) * 4), usage });
  const uniforms = buffer(4, UNIFORM | COPY_DST);
  const params = buffer(P), grads = buffer(P);
  const labels = buffer(cap), stats = buffer(2 * cap);
  const out = layers.map((l) => buffer(cap * l.outSize));
  const dout = layers.map((l, i) => (i >= first && i < last ? buffer(cap * l.outSize) : null));
  const aux = layers.map((l) => (l.type === "pool" || l.type === "dropout" ? buffer(cap * l.outSize) : null));

  // split-K of each weight gradient: enough workgroups to fill a GPU at full chunks
  const shapes = layers.map((l) => (l.type === "conv" || l.type === "fc" ? wgsl.convShape(l) : null));
  const slices = shapes.map((g) => {
    if (!g) return null;
    const K = g.SY * g.SX * g.C, rows = cap * g.OH * g.OW;
    const tiles = Math.ceil((K + 1) / 64) * Math.ceil(g.F / wgsl.tileWidth(g.F));
    const split = Math.max(1, Math.min(Math.ceil(256 / tiles), Math.ceil(rows / 256)));
    return Math.ceil(Math.ceil(rows / split) / 16) * 16;
  });
  const partFloats = Math.max(16, ...shapes.map((g, i) => (g ? Math.ceil(cap * g.OH * g.OW / slices[i]) * (g.SY * g.SX * g.C + 1) * g.F : 0)));
  const part = buffer(partFloats);

  const modules = new Map();
  function kernel(code, buffers, groups) {
    let module = modules.get(code);
    if (!module) modules.set(code, (module = device.createShaderModule({ code })));
    const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [uniforms, ...buffers].map((b, binding) => ({ binding, resource: { buffer: b } })),
    });
    return { pipeline, bindGroup, groups };
  }
  const flat = (count) => (n) => {
    const g = Math.ceil(count(n) / wgsl.THREADS), x = Math.min(g, FLAT_LIMIT);
    return [x, Math.ceil(g / x), 1];
  };
  const tiles = (M, N) => (n) => [Math.ceil(N / wgsl.tileWidth(N)), Math.ceil(M(n) / 64), 1];

  function forwardKernels(training) {
    const list = [];
    for (let i = 1; i < last; i++) {
      const l = layers[i], x = out[i - 1], y = out[i], size = l.outSize;
      if (shapes[i]) {
        const g = shapes[i], w = layout.find((b) => b.layer === i && b.kind === "weights");
        list.push(kernel(wgsl.convForward(g, w.offset, w.offset + w.size), [x, params, y], tiles((n) => n * g.OH * g.OW, g.F)));
      } else if (l.type === "pool") {
        list.push(kernel(wgsl.poolForward(l), [x, y, aux[i]], flat((n) => n * size)));
      } else if (l.type === "dropout") {
        const drawn = layers.slice(0, i).filter((d) => d.type === "dropout").reduce((s, d) => s + d.outSize, 0);
        list.push(training
          ? kernel(wgsl.dropoutForward(size, l.dropProb, drawn), [x, y, aux[i]], flat((n) => n * size))
          : kernel(wgsl.copy(size), [x, y], flat((n) => n * size)));
      } else {
        list.push(kernel(wgsl.activationForward(l.type, size), [x, y], flat((n) => n * size)));
      }
    }
    const sm = training
      ? kernel(wgsl.softmax(numClasses, true), [out[last - 1], out[last], labels, dout[last - 1], stats], flat((n) => n))
      : kernel(wgsl.softmax(numClasses, false), [out[last - 1], out[last]], flat((n) => n));
    list.push(sm);
    return list;
  }

  function backwardKernels() {
    const list = [];
    for (let i = last - 1; i >= first; i--) {
      const l = layers[i], dy = dout[i], dx = i > first ? dout[i - 1] : null, inCount = (n) => n * l.inSize;
      if (shapes[i]) {
        const g = shapes[i], K = g.SY * g.SX * g.C, w = layout.find((b) => b.layer === i && b.kind === "weights");
        const slice = slices[i];
        list.push(kernel(wgsl.convWeightGrad(g, slice), [out[i - 1], dy, part],
          (n) => [Math.ceil(g.F / wgsl.tileWidth(g.F)), Math.ceil((K + 1) / 64), Math.ceil(n * g.OH * g.OW / slice)]));
        list.push(kernel(wgsl.gradScatter(g, w.offset, w.offset + w.size, slice), [part, grads], flat(() => (K + 1) * g.F)));
        if (dx) list.push(kernel(wgsl.convInputGrad(g, w.offset), [dy, params, dx], tiles((n) => n * g.H * g.W, g.C)));
      } else if (l.type === "pool") {
        list.push(kernel(wgsl.poolBackward(l), [dy, aux[i], dx], flat(inCount)));
      } else if (l.type === "dropout") {
        list.push(kernel(wgsl.multiply(l.outSize), [dy, aux[i], dx], flat(inCount)));
      } else {
        list.push(kernel(wgsl.activationBackward(l.type, l.outSize), [out[i], dy, dx], flat(inCount)));
      }
    }
    return list;
  }

  const training = [...forwardKernels(true), ...backwardKernels()];
  let predicting = null;
  const oom = await device.popErrorScope();
  const invalid = await device.popErrorScope();
  if (oom || invalid) throw new Error(`WebGPU engine setup failed: ${(oom ?? invalid).message}`);

  let staging = null, stagingBytes = 0;
  function stagingFor(bytes) {
    if (bytes > stagingBytes) {
      staging?.destroy();
      stagingBytes = Math.max(bytes, 2 * stagingBytes);
      staging = device.createBuffer({ size: stagingBytes, usage: MAP_READ | COPY_DST });
    }
    return staging;
  }

  let uploaded = null;
  function loadParams(p) {
    if (!p || p.length !== P) throw new Error(`params must have ${P} floats, got ${p?.length}`);
    if (p !== uploaded) {
      device.queue.writeBuffer(params, 0, p instanceof Float32Array ? p : Float32Array.from(p));
      uploaded = p;
    }
  }

  function checkBatch(x, n) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`n must be a non-negative integer, got ${n}`);
    if (!x || x.length < n * inSize) throw new Error(`x must hold ${n}×${inSize} floats, got ${x?.length}`);
  }

  function run(kernels, n, encoder) {
    const pass = encoder.beginComputePass();
    for (const k of kernels) {
      const [gx, gy, gz] = k.groups(n);
      if (gx * gy * gz === 0) continue;
      pass.setPipeline(k.pipeline);
      pass.setBindGroup(0, k.bindGroup);
      pass.dispatchWorkgroups(gx, gy, gz);
    }
    pass.end();
  }

  // Chunks go one submission each: queue writes between submissions stay in order.
  function submitChunks(x, n, total, seed, kernels, before, after) {
    const xs = x instanceof Float32Array ? x : Float32Array.from(x);
    for (let start = 0; start < n; start += cap) {
      const m = Math.min(cap, n - start);
      device.queue.writeBuffer(uniforms, 0, new Uint32Array([m, start, total, seed >>> 0]));
      device.queue.writeBuffer(out[0], 0, xs, start * inSize, m * inSize);
      const encoder = device.createCommandEncoder();
      if (start === 0) before?.(encoder);
      run(kernels(m, start), m, encoder);
      after(encoder, start, m);
      device.queue.submit([encoder.finish()]);
    }
  }

  async function readBack(buf, bytes) {
    try {
      await buf.mapAsync(1, 0, bytes);
    } catch (e) {
      throw new Error(lostReason ?? `reading the GPU's result failed: ${e.message}`);
    }
    const data = new Float32Array(buf.getMappedRange(0, bytes).slice(0));
    buf.unmap();
    return data;
  }

  // calls run one after another; a lost device rejects them (the caller's mistakes throw at once)
  let busy = Promise.resolve();
  function serial(fn) {
    const run = busy.then(() => {
      if (lostReason) throw new Error(lostReason);
      return fn();
    });
    busy = run.catch(() => {});
    return run;
  }

  function gradient(p, x, y, n, { seed = 0 } = {}) {
    checkBatch(x, n);
    if (!y || y.length < n) throw new Error(`labels must hold ${n} integers, got ${y?.length}`);
    const labelWords = new Uint32Array(n);
    for (let e = 0; e < n; e++) {
      const v = y[e];
      if (!Number.isInteger(v) || v < 0 || v >= numClasses) throw new Error(`labels must be in [0, ${numClasses}), got ${v} at ${e}`);
      labelWords[e] = v;
    }
    return serial(async () => {
      loadParams(p);
      const bytes = 4 * (P + 2 * n), buf = stagingFor(bytes);
      submitChunks(x, n, n, seed, (m, start) => {
        device.queue.writeBuffer(labels, 0, labelWords, start, m);
        return training;
      }, (encoder) => encoder.clearBuffer(grads), (encoder, start, m) => {
        if (m) encoder.copyBufferToBuffer(stats, 0, buf, 4 * (P + 2 * start), 8 * m);
        if (start + m >= n) encoder.copyBufferToBuffer(grads, 0, buf, 0, 4 * P);
      });
      if (n === 0) {
        const encoder = device.createCommandEncoder();
        encoder.clearBuffer(grads);
        encoder.copyBufferToBuffer(grads, 0, buf, 0, 4 * P);
        device.queue.submit([encoder.finish()]);
      }
      const data = await readBack(buf, bytes);
      let lossSum = 0, correct = 0;
      for (let e = 0; e < n; e++) { lossSum += data[P + 2 * e]; correct += data[P + 2 * e + 1]; }
      return { gradSum: data.slice(0, P), count: n, lossSum, correct };
    });
  }

  function predict(p, x, n) {
    checkBatch(x, n);
    return serial(async () => {
      loadParams(p);
      predicting ??= forwardKernels(false);
      const bytes = 4 * Math.max(1, n * numClasses), buf = stagingFor(bytes);
      submitChunks(x, n, n, 0, () => predicting, null, (encoder, start, m) => {
        encoder.copyBufferToBuffer(out[last], 0, buf, 4 * start * numClasses, 4 * m * numClasses);
      });
      if (n === 0) return new Float32Array(0);
      return (await readBack(buf, bytes)).slice(0, n * numClasses);
    });
  }

  return {
    backend: "webgpu",
    description,
    layers,
    layout,
    paramCount: P,
    numClasses,
    inputShape: [...layers[0].outShape],
    maxBatch: cap,
    lost,
    initParams: (seed) => initParams(layers, layout, seed),
    gradient,
    predict,
    destroy: () => device.destroy(),
  };
}
