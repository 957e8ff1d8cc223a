// The flat float32 parameter vector in ConvNetJS storage order: per conv/fc
// layer its weights (conv out×sy×sx×in, fc out×num_inputs) then its biases.

import { gaussian } from "./rng.js";

export function buildLayout(layers) {
  const blocks = [];
  let offset = 0;
  layers.forEach((layer, n) => {
    if (layer.type !== "conv" && layer.type !== "fc") return;
    const out = layer.outShape[2];
    const shape = layer.type === "conv" ? [out, layer.sy, layer.sx, layer.inShape[2]] : [out, layer.inSize];
    const size = shape.reduce((a, b) => a * b, 1);
    blocks.push({ layer: n, kind: "weights", shape, offset, size, l1DecayMul: layer.l1DecayMul, l2DecayMul: layer.l2DecayMul });
    offset += size;
    blocks.push({ layer: n, kind: "biases", shape: [out], offset, size: out, l1DecayMul: 0, l2DecayMul: 0 });
    offset += out;
  });
  return blocks;
}

export const paramCount = (blocks) => (blocks.length ? blocks.at(-1).offset + blocks.at(-1).size : 0);

// Weights gaussian with std sqrt(1/fan_in), biases at bias_pref (0.1 before a relu).
export function initParams(layers, blocks, seed) {
  const params = new Float32Array(paramCount(blocks));
  const normal = gaussian(seed);
  for (const b of blocks) {
    if (b.kind === "weights") {
      const std = Math.sqrt(b.shape[0] / b.size);
      for (let i = b.offset; i < b.offset + b.size; i++) params[i] = normal() * std;
    } else {
      params.fill(layers[b.layer].biasPref, b.offset, b.offset + b.size);
    }
  }
  return params;
}
