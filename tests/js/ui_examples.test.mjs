import { test } from "node:test";
import assert from "node:assert/strict";
import { ExampleSampler, normalizationTable } from "../../mlitb/static/js/examples.js";

function shard(count, size, first) {
  const pixels = new Uint8Array(count * size);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    pixels.fill(first + i, i * size, (i + 1) * size);
    labels[i] = (first + i) % 10;
  }
  return { count, pixels, labels };
}

test("one pass visits every example of every shard exactly once", () => {
  const sampler = new ExampleSampler([shard(5, 3, 0), shard(7, 3, 100)]);
  const seen = [];
  for (let i = 0; i < 12; i++) {
    const [s, index] = sampler.next();
    seen.push(s.pixels[index * 3]);
  }
  assert.deepEqual(seen.sort((a, b) => a - b), [0, 1, 2, 3, 4, 100, 101, 102, 103, 104, 105, 106]);
});

test("batches are normalised pixels with their labels", () => {
  const sampler = new ExampleSampler([shard(4, 2, 10)], () => 0.5);
  const x = new Float32Array(8), labels = new Int32Array(4);
  sampler.batch(4, x, labels, normalizationTable({ scale: 0.5, offset: -1 }));
  for (let e = 0; e < 4; e++) {
    const pixel = 10 + labels[e];
    assert.deepEqual([x[2 * e], x[2 * e + 1]], [pixel * 0.5 - 1, pixel * 0.5 - 1]);
  }
  assert.deepEqual([...labels].sort(), [0, 1, 2, 3]);
});

test("a work's examples follow its seeded order over the shards in list order, one pass", async () => {
  const { OrderedExamples } = await import("../../mlitb/static/js/examples.js");
  const { exampleOrder } = await import("../../mlitb/static/js/work-order.js");
  const examples = new OrderedExamples([shard(5, 2, 0), shard(3, 2, 100)], 42);
  const x = new Float32Array(16), labels = new Int32Array(8);
  const identity = normalizationTable({ scale: 1, offset: 0 });
  assert.equal(examples.batch(6, x, labels, identity), 6);
  assert.equal(examples.position, 6);
  const expected = [...exampleOrder([5, 3], 42)].map((g) => (g < 5 ? g : 100 + g - 5));
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((e) => x[2 * e]), expected.slice(0, 6));
  assert.equal(examples.batch(6, x, labels, identity), 2); // only 2 left in the pass
  assert.deepEqual([x[0], x[2]], expected.slice(6));
  assert.equal(examples.left, 0);
});
