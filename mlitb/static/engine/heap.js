// One memory for params, gradients and every activation: wasm linear memory
// when the SIMD kernels load (hot kernels in wasm, the rest in JS on the same
// bytes), else a plain ArrayBuffer with the JS kernels.

import { jsKernels, jsMathKernels } from "./kernels-js.js";

const WASM_KERNELS = ["convRows", "packWeights", "unpackAddWeights", "convForward", "convWeightGrad",
  "convInputGrad", "padCopy", "cropCopy", "colSums", "poolForward", "poolBackward", "reluForward", "reluBackward"];
const PAGE = 65536;

let compiled;

async function compileKernels() {
  try {
    const url = new URL("./kernels.wasm", import.meta.url);
    const bytes = url.protocol === "file:"
      ? await (await import("node:fs/promises")).readFile(url)
      : await (await fetch(url)).arrayBuffer();
    return await WebAssembly.compile(bytes);
  } catch {
    return null; // no WebAssembly SIMD here (or no wasm at all): plain JS
  }
}

const withMath = (k) => ({ ...k, ...jsMathKernels(k.f) });

export async function openHeap(simd) {
  const module = simd ? await (compiled ??= compileKernels()) : null;
  if (!module) {
    return { kind: "js", base: 16, reserve: (bytes) => withMath(jsKernels(new ArrayBuffer(bytes))) };
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
