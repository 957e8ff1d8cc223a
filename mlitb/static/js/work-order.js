// The deterministic example order of a `work` frame (docs/protocol.md, `work`):
// the listed shards' examples concatenated in list order, permuted by
// Fisher–Yates from mulberry32(seed); batch b starting at position p uses
// dropout seed (seed + 0x9E3779B9·p) mod 2^32. Mirrors mlitb/work_order.py bit
// for bit (tests/vectors/order/work_order.json), so the master can recompute a result.

import { mulberry32 } from "../engine/rng.js";

export const MAX_BATCHES = 4096;

// floor(r · n / 2^32) exactly for a uint32 r and n < 2^37: split r so every product fits 53 bits.
function pick(r, n) {
  const hi = Math.floor(r / 65536), lo = r % 65536;
  return Math.floor((hi * n + Math.floor((lo * n) / 65536)) / 65536);
}

export function exampleOrder(counts, seed) {
  const total = counts.reduce((a, b) => a + b, 0);
  const order = new Uint32Array(total);
  for (let i = 0; i < total; i++) order[i] = i;
  const uniform = mulberry32(seed >>> 0);
  for (let i = total - 1; i > 0; i--) {
    const j = pick(uniform() * 4294967296, i + 1); // the draw is r / 2^32 exactly
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

export function batchSeed(seed, position) {
  return (seed + Math.imul(0x9e3779b9, position)) >>> 0;
}

// [shard index, example index] of a global example index, given the shards' example counts.
export function locator(counts) {
  const starts = [];
  let total = 0;
  for (const c of counts) {
    starts.push(total);
    total += c;
  }
  return (index) => {
    let s = starts.length - 1;
    while (starts[s] > index) s--;
    return [s, index - starts[s]];
  };
}
