// Examples drawn from decoded shards: a shuffled pass over all of them,
// normalised into the Float32Array batches the engine takes.

import { exampleOrder, locator } from "./work-order.js";

export function normalizationTable({ scale = 1 / 255, offset = 0 } = {}) {
  const table = new Float32Array(256);
  for (let v = 0; v < 256; v++) table[v] = v * scale + offset;
  return table;
}

// Walks the examples of a set of shards in a random order, reshuffling at the end of each pass.
export class ExampleSampler {
  constructor(shards, random = Math.random) {
    this.shards = shards;
    this.random = random;
    this.starts = [];
    let total = 0;
    for (const shard of shards) {
      this.starts.push(total);
      total += shard.count;
    }
    this.total = total;
    this.order = new Uint32Array(total);
    for (let i = 0; i < total; i++) this.order[i] = i;
    this.cursor = total;
  }

  next() {
    if (this.cursor >= this.total) {
      for (let i = this.total - 1; i > 0; i--) {
        const j = Math.floor(this.random() * (i + 1));
        const t = this.order[i];
        this.order[i] = this.order[j];
        this.order[j] = t;
      }
      this.cursor = 0;
    }
    const index = this.order[this.cursor++];
    let s = this.starts.length - 1;
    while (this.starts[s] > index) s--;
    return [this.shards[s], index - this.starts[s]];
  }

  // Fill x (n × inputSize floats) and labels with the next n examples.
  batch(n, x, labels, table) {
    for (let e = 0; e < n; e++) {
      const [shard, i] = this.next();
      const size = shard.pixels.length / shard.count;
      const pixels = shard.pixels.subarray(i * size, (i + 1) * size);
      const base = e * size;
      for (let j = 0; j < size; j++) x[base + j] = table[pixels[j]];
      labels[e] = shard.labels[i];
    }
  }
}

// The examples of one `work`, in the order its seed fixes (work-order.js): the shards in the
// work's list order, walked once. `position` is where the next batch starts (its dropout seed).
export class OrderedExamples {
  constructor(shards, seed) {
    this.shards = shards;
    this.order = exampleOrder(shards.map((s) => s.count), seed);
    this.locate = locator(shards.map((s) => s.count));
    this.position = 0;
  }

  get left() {
    return this.order.length - this.position;
  }

  // Fill x and labels with the next min(n, left) examples; returns how many.
  batch(n, x, labels, table) {
    const m = Math.min(n, this.left);
    for (let e = 0; e < m; e++) {
      const [s, i] = this.locate(this.order[this.position + e]);
      const shard = this.shards[s];
      const size = shard.pixels.length / shard.count;
      const pixels = shard.pixels.subarray(i * size, (i + 1) * size);
      const base = e * size;
      for (let j = 0; j < size; j++) x[base + j] = table[pixels[j]];
      labels[e] = shard.labels[i];
    }
    this.position += m;
    return m;
  }
}
