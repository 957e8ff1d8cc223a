// Which engine a device trains with: WebGPU when a real (non-fallback) adapter
// exists and a short calibration on the project's own net shows it faster than
// the WASM SIMD engine; else WASM SIMD; else plain JS. A volunteer can force
// one. The returned net switches itself to the CPU engine if the GPU is lost
// (device.lost or a failed call), redoing that call, so the trainer carries on.

import { createNet } from "./net.js";
import { mulberry32 } from "./rng.js";

export const ENGINE_CHOICES = ["auto", "webgpu", "wasm", "js"];
const CALIBRATION_BATCH = 64;
const CALIBRATION_MS = 150;

export function parseEngineChoice(value) {
  const choice = String(value ?? "auto").toLowerCase();
  if (!ENGINE_CHOICES.includes(choice)) throw new Error(`engine must be one of ${ENGINE_CHOICES.join(", ")}, got '${value}'`);
  return choice;
}

// Examples per second of net.gradient at `batch` examples: one warm-up call,
// then calls until CALIBRATION_MS has passed (at least two).
export async function calibrate(net, batch = CALIBRATION_BATCH, now = () => performance.now()) {
  const size = net.inputShape.reduce((a, b) => a * b, 1), u = mulberry32(7);
  const x = Float32Array.from({ length: batch * size }, () => u());
  const labels = Int32Array.from({ length: batch }, (_, i) => i % net.numClasses);
  const params = net.initParams(1);
  await net.gradient(params, x, labels, batch, { seed: 1 });
  let calls = 0;
  const started = now();
  while (calls < 2 || now() - started < CALIBRATION_MS) {
    await net.gradient(params, x, labels, batch, { seed: calls });
    calls++;
  }
  return (calls * batch * 1000) / (now() - started);
}

/**
 * { net, engine, adapter, examplesPerSecond, notes }. `gpu` defaults to
 * navigator.gpu; onChange(engineName, reason) is told when a lost GPU hands over.
 */
export async function chooseEngine(layers, { choice = "auto", gpu, batch = CALIBRATION_BATCH, onChange = () => {} } = {}) {
  choice = parseEngineChoice(choice);
  const notes = [];
  const { cpu, rate: cpuRate } = await fastestCpu(layers, choice, batch, notes);
  if (choice === "js" || choice === "wasm") {
    return { net: cpu, engine: cpu.backend, adapter: "", examplesPerSecond: cpuRate, notes };
  }
  let gpuNet = null, adapter = "";
  try {
    const { openGpu, createGpuNet } = await import("./gpu-net.js");
    const opened = await openGpu({ gpu, allowFallback: choice === "webgpu" });
    if (opened.error) notes.push(`WebGPU: ${opened.error}`);
    else {
      adapter = opened.description;
      gpuNet = await createGpuNet(layers, { device: opened.device, description: adapter, maxBatch: 256 });
      gpuNet.keep = opened; // the instance must outlive its device
    }
  } catch (e) {
    notes.push(`WebGPU: ${e.message}`);
  }
  let gpuRate = 0;
  if (gpuNet) {
    try {
      gpuRate = await calibrate(gpuNet, batch);
    } catch (e) {
      notes.push(`WebGPU calibration failed: ${e.message}`);
      gpuNet = null;
    }
  }
  const useGpu = gpuNet && (choice === "webgpu" || gpuRate > cpuRate);
  if (gpuNet && !useGpu) {
    notes.push(`WebGPU (${adapter}) ${gpuRate.toFixed(0)}/s < ${cpu.backend} ${cpuRate.toFixed(0)}/s`);
    gpuNet.destroy();
  }
  if (!useGpu) return { net: cpu, engine: cpu.backend, adapter: "", examplesPerSecond: cpuRate, notes };
  return { net: withCpuFallback(gpuNet, cpu, onChange), engine: "webgpu", adapter, examplesPerSecond: gpuRate, notes };
}

// The CPU engine asked for; where relaxed SIMD loaded, the strict kernels are
// calibrated too and the faster kept (fused multiply-add is not faster on every CPU).
async function fastestCpu(layers, choice, batch, notes) {
  const first = await createNet(layers, { simd: choice !== "js" });
  const rate = await calibrate(first, batch);
  if (first.backend !== "wasm-relaxed-simd") return { cpu: first, rate };
  const strict = await createNet(layers, { simd: true, relaxed: false });
  const strictRate = await calibrate(strict, batch);
  if (strictRate <= rate) return { cpu: first, rate };
  notes.push(`strict SIMD ${strictRate.toFixed(0)}/s > relaxed SIMD ${rate.toFixed(0)}/s here`);
  return { cpu: strict, rate: strictRate };
}

// The GPU net until it fails, then the CPU net for good, the failed call redone there.
export function withCpuFallback(gpuNet, cpu, onChange) {
  let current = gpuNet, reason = null;
  const handOver = (why) => {
    if (current === cpu) return;
    current = cpu;
    reason = why;
    onChange(cpu.backend, why);
  };
  gpuNet.lost?.then((why) => handOver(why));
  // the GPU engine throws the caller's mistakes at once and rejects for its own failures
  const guarded = (name) => async (...args) => {
    if (current !== cpu) {
      const pending = current[name](...args);
      try {
        return await pending;
      } catch (e) {
        handOver(e.message);
      }
    }
    return cpu[name](...args);
  };
  return {
    get backend() { return current.backend; },
    get fallbackReason() { return reason; },
    get maxBatch() { return current.maxBatch; }, // the GPU's chunk; the CPU engine leaves it to the trainer
    gpu: gpuNet,
    layers: cpu.layers,
    layout: cpu.layout,
    paramCount: cpu.paramCount,
    numClasses: cpu.numClasses,
    inputShape: cpu.inputShape,
    initParams: cpu.initParams,
    gradient: guarded("gradient"),
    predict: guarded("predict"),
  };
}
