import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { batchSeed, exampleOrder, locator } from "../../mlitb/static/js/work-order.js";

const { cases } = JSON.parse(readFileSync(new URL("../vectors/order/work_order.json", import.meta.url)));

for (const c of cases) {
  test(`work order matches the Python vectors: counts ${c.counts.slice(0, 3)} seed ${c.seed}`, () => {
    const order = exampleOrder(c.counts, c.seed);
    assert.deepEqual([...order.subarray(0, c.head.length)], c.head);
    let checksum = 0n;
    order.forEach((v, i) => { checksum += BigInt(i + 1) * BigInt(v); });
    assert.equal(Number(checksum % 4294967296n), c.checksum);
    const locate = locator(c.counts);
    assert.deepEqual(c.head.map((i) => locate(i)), c.located);
    let position = 0;
    const seeds = c.batches.map((size) => { const s = batchSeed(c.seed, position); position += size; return s; });
    assert.deepEqual(seeds, c.batch_seeds);
  });
}
