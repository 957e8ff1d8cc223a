import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_CACHE_BYTES, cacheSummary, shardsOfGoneDatasets, shardsToEvict } from "../../mlitb/static/js/cache-policy.js";
import { retryDelayMs } from "../../mlitb/static/js/backoff.js";

const MB = 1024 * 1024;
const entry = (id, used, bytes = MB, dataset = "mnist") => ({ id, dataset, bytes, used });

test("nothing is evicted while the cache is within its limits", () => {
  const entries = [entry("a", 1), entry("b", 2)];
  assert.deepEqual(shardsToEvict(entries, { maxBytes: 2 * MB, maxShards: 2 }), []);
  assert.deepEqual(shardsToEvict([]), []);
});

test("least recently used shards go first, until the bytes fit", () => {
  const entries = [entry("new", 30), entry("old", 10), entry("mid", 20), entry("newest", 40)];
  assert.deepEqual(shardsToEvict(entries, { maxBytes: 2 * MB }), ["old", "mid"]);
  assert.deepEqual(shardsToEvict(entries, { maxBytes: 2.5 * MB }), ["old", "mid"]);
  assert.deepEqual(shardsToEvict(entries, { maxBytes: 3 * MB }), ["old"]);
});

test("the shard count limit (limits.cache_shards) applies too: whichever is tighter", () => {
  const entries = [entry("a", 1), entry("b", 2), entry("c", 3)];
  assert.deepEqual(shardsToEvict(entries, { maxBytes: 100 * MB, maxShards: 1 }), ["a", "b"]);
  assert.deepEqual(shardsToEvict(entries, { maxBytes: 1 * MB, maxShards: 100 }), ["a", "b"]);
});

test("a shard assigned right now is never evicted, even above the limits", () => {
  const entries = [entry("a", 1), entry("b", 2), entry("c", 3)];
  assert.deepEqual(shardsToEvict(entries, { maxBytes: 1 * MB, keep: new Set(["a"]) }), ["b", "c"]);
  assert.deepEqual(shardsToEvict(entries, { maxBytes: 0, keep: new Set(["a", "b", "c"]) }), []);
  assert.deepEqual(shardsToEvict(entries, { maxShards: 1, keep: new Set(["c", "b"]) }), ["a"]);
});

test("the default byte limit is 256 MB, across datasets", () => {
  assert.equal(DEFAULT_CACHE_BYTES, 256 * MB);
  const entries = [
    ...Array.from({ length: 200 }, (_, i) => entry(`old-${i}`, i, MB, "cifar")),
    ...Array.from({ length: 100 }, (_, i) => entry(`new-${i}`, 1000 + i, MB, "mnist")),
  ];
  const evicted = shardsToEvict(entries);
  assert.equal(evicted.length, 300 - 256);
  assert.ok(evicted.every((id) => id.startsWith("old-")));
});

test("shards of datasets the data server no longer lists are dropped", () => {
  const entries = [entry("a", 1, MB, "mnist"), entry("b", 2, MB, "deleted"), entry("c", 3, MB, "cifar")];
  assert.deepEqual(shardsOfGoneDatasets(entries, ["mnist", "cifar"]), ["b"]);
  assert.deepEqual(shardsOfGoneDatasets(entries, []), ["a", "b", "c"]);
});

test("the summary counts one dataset's shards and every byte", () => {
  const entries = [entry("a", 1, 10, "mnist"), entry("b", 2, 20, "cifar"), entry("c", 3, 30, "mnist")];
  assert.deepEqual(cacheSummary(entries, "mnist"), { shards: 2, allShards: 3, bytes: 60 });
});

test("retry delays grow exponentially with jitter, up to their cap", () => {
  const low = (attempt) => retryDelayMs(attempt, { baseMs: 500, maxMs: 5000, random: () => 0 });
  const high = (attempt) => retryDelayMs(attempt, { baseMs: 500, maxMs: 5000, random: () => 1 });
  assert.deepEqual([0, 1, 2, 3, 4, 10].map(high), [500, 1000, 2000, 4000, 5000, 5000]);
  assert.deepEqual([0, 1, 2, 3, 4, 10].map(low), [250, 500, 1000, 2000, 2500, 2500]);
  for (let i = 0; i < 100; i++) {
    const ms = retryDelayMs(3);
    assert.ok(ms >= 2000 && ms <= 4000, ms);
  }
});
