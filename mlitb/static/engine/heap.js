// One memory for params, gradients and every activation: wasm linear memory
// when the SIMD kernels load (hot kernels in wasm, the rest in JS on the same
// bytes), else a plain ArrayBuffer with the JS kernels.

import { jsKernels, jsMathKernels } from "./kernels-js.js";

const WASM_KERNELS = ["convRows", "packWeights", "unpackAddWeights", "convForward", "convWeightGrad",
  "convInputGrad", "padCopy", "cropCopy", "colSums", "poolForward", "poolBackward", "reluForward", "reluBackward"];
const PAGE = 65536;

const compiled = new Map();

// f32x4.relaxed_madd in a one-function module: does this browser have relaxed SIMD?
const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0,
  10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11]);
export const hasRelaxedSimd = () => typeof WebAssembly === "object" && WebAssembly.validate(RELAXED_PROBE);

// The kernels' module, or { failed } with what went wrong: a missing or broken
// kernels.wasm is a deployment mistake worth 9× speed, so it is named, not hidden.
async function compileKernels(file) {
  if (typeof WebAssembly !== "object") return { failed: "no WebAssembly here" };
  let bytes;
  try {
    const url = new URL(`./${file}`, import.meta.url); // throws in a data: module (the standalone closure page)
    if (url.protocol === "file:") {
      bytes = await (await import("node:fs/promises")).readFile(url);
    } else {
      const response = await fetch(url);
      if (!response.ok) return { failed: `${file} failed: ${response.status}` };
      bytes = await response.arrayBuffer();
    }
  } catch (e) {
    return { failed: `${file} failed: ${e.code ?? e.message}` };
  }
  try {
    return { module: await WebAssembly.compile(bytes) };
  } catch (e) {
    // a browser without WebAssembly SIMD refuses a good binary too
    return { failed: `${file} failed: ${e.name}: ${e.message}`.slice(0, 160) };
  }
}

function kernelsModule(file) {
  if (!compiled.has(file)) compiled.set(file, compileKernels(file));
  return compiled.get(file);
}

const withMath = (k) => ({ ...k, ...jsMathKernels(k.f) });

// kind: "wasm-relaxed-simd" (fused multiply-add, where the browser has relaxed SIMD and
// `relaxed` is not false), "wasm-simd", "js" (asked for), or "js-fallback (kernels.wasm failed: …)"
export async function openHeap(simd, { relaxed = true } = {}) {
  let fused = simd && relaxed && hasRelaxedSimd();
  let { module, failed } = simd ? await kernelsModule(fused ? "kernels-relaxed.wasm" : "kernels.wasm") : {};
  if (fused && !module) {
    fused = false;
    ({ module, failed } = await kernelsModule("kernels.wasm"));
  }
  if (!module) {
    const kind = failed ? `js-fallback (${failed})` : "js";
    return { kind, base: 16, reserve: (bytes) => withMath(jsKernels(new ArrayBuffer(bytes))) };
  }
  const { exports } = await WebAssembly.instantiate(module, {});
  const base = (exports.__heap_base.value + 15) & ~15;
  return {
    kind: fused ? "wasm-relaxed-simd" : "wasm-simd",
    base,
    reserve(bytes) {
      const missing = bytes - exports.memory.buffer.byteLength;
      if (missing > 0) exports.memory.grow(Math.ceil(missing / PAGE));
      const k = withMath(jsKernels(exports.memory.buffer));
      for (const name of WASM_KERNELS) k[name] = exports[name];
      return k;
    },
  };
}
