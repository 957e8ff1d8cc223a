import { test } from "node:test";
import assert from "node:assert/strict";
import { capTrainers, deviceStatement, downloadBytes } from "../../mlitb/static/js/volunteer-info.js";
import { Tally } from "../../mlitb/static/js/volunteer-tally.js";
import { formatBytes } from "../../mlitb/static/js/format.js";

class Storage {
  constructor() { this.items = new Map(); }
  getItem(key) { return this.items.has(key) ? this.items.get(key) : null; }
  setItem(key, value) { this.items.set(key, String(value)); }
}

test("the download size is the sum of the training shards' bytes", () => {
  const manifest = { splits: { train: { shards: [{ bytes: 1000 }, { bytes: 2500 }] }, test: { shards: [{ bytes: 9999 }] } } };
  assert.deepEqual(downloadBytes(manifest), { bytes: 3500, shards: 2 });
  assert.deepEqual(downloadBytes(null), { bytes: 0, shards: 0 });
});

test("the trainer count is capped at the cores, with a note saying why", () => {
  assert.deepEqual(capTrainers(64, 2), { count: 2, limit: 2, note: capTrainers(64, 2).note });
  assert.match(capTrainers(64, 2).note, /2 CPU cores: at most 2 trainers/);
  assert.deepEqual(capTrainers(1, 8), { count: 1, limit: 8, note: "" });
  assert.equal(capTrainers("x", 4).count, 1);
  assert.equal(capTrainers(3, 0).count, 1);
});

test("the statement names the download, the cores and the battery", () => {
  const text = deviceStatement({ bytes: 3 * 1024 * 1024, shards: 12, trainers: 2, cores: 4, formatBytes });
  assert.match(text, /up to 3\.0 MB of training data \(12 shards\)/);
  assert.match(text, /2 trainers keep 2 CPU cores of this device's 4 busy/);
  assert.match(text, /battery/);
});

test("the tally survives a reload and only ever adds", () => {
  const storage = new Storage();
  const tally = new Tally(storage);
  tally.update({ iterations: 3, examples: 300, accepted: 2 });
  tally.update({ iterations: 2, examples: 200, accepted: 2 }); // a trainer was removed
  assert.deepEqual(tally.update({ iterations: 4, examples: 400, accepted: 3 }), { iterations: 5, examples: 500, accepted: 3 });
  tally.endSession();
  const reloaded = new Tally(storage);
  assert.deepEqual(reloaded.update({ iterations: 1, examples: 10, accepted: 0 }), { iterations: 6, examples: 510, accepted: 3 });
  storage.setItem("mlitb.volunteer.tally", "{not json");
  assert.deepEqual(new Tally(storage).totals, { iterations: 0, examples: 0, accepted: 0 });
});
