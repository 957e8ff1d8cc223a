// One memory for params, gradients and every activation: wasm linear memory
// when the SIMD kernels load (hot kernels in wasm, the rest in JS on the same
// bytes), else a plain ArrayBuffer with the JS kernels.

import { jsKernels, jsMathKernels } from "./kernels-js.js";

const WASM_KERNELS = ["convRows", "packWeights", "unpackAddWeights", "convForward", "convWeightGrad",
  "convInputGrad", "padCopy", "cropCopy", "colSums", "poolForward", "poolBackward", "reluForward", "reluBackward"];
const PAGE = 65536;

let compiled;

// The kernels' module, or { failed } with what went wrong: a missing or broken
// kernels.wasm is a deployment mistake worth 9× speed, so it is named, not hidden.
async function compileKernels() {
  if (typeof WebAssembly !== "object") return { failed: "no WebAssembly here" };
  const url = new URL("./kernels.wasm", import.meta.url);
  let bytes;
  try {
    if (url.protocol === "file:") {
      bytes = await (await import("node:fs/promises")).readFile(url);
    } else {
      const response = await fetch(url);
      if (!response.ok) return { failed: `kernels.wasm failed: ${response.status}` };
      bytes = await response.arrayBuffer();
    }
  } catch (e) {
    return { failed: `kernels.wasm failed: ${e.code ?? e.message}` };
  }
  try {
    return { module: await WebAssembly.compile(bytes) };
  } catch (e) {
    // a browser without WebAssembly SIMD refuses a good binary too
    return { failed: `kernels.wasm failed: ${e.name}: ${e.message}`.slice(0, 160) };
  }
}

const withMath = (k) => ({ ...k, ...jsMathKernels(k.f) });

// kind: "wasm-simd", "js" (asked for), or "js-fallback (kernels.wasm failed: …)"
export async function openHeap(simd) {
  const { module, failed } = simd ? await (compiled ??= compileKernels()) : {};
  if (!module) {
    const kind = failed ? `js-fallback (${failed})` : "js";
    return { kind, base: 16, reserve: (bytes) => withMath(jsKernels(new ArrayBuffer(bytes))) };
  }
  const { exports } = await WebAssembly.instantiate(module, {});
  const base = (exports.__heap_base.value + 15) & ~15;
  return {
    kind: "wasm-simd",
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
