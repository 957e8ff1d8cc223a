import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseShard, unzip, crc32, ShardFormatError } from "../../mlitb/static/js/shards.js";

const repo = fileURLToPath(new URL("../..", import.meta.url));

function pythonShard(numClasses) {
  const code = `
import sys, numpy as np
from mlitb.data.shards import encode_shard
rng = np.random.default_rng(1)
pixels = rng.integers(0, 256, size=(5, 4, 3, 2), dtype=np.uint8)
labels = np.array([0, 1, 2, ${numClasses - 1}, 1])
sys.stdout.buffer.write(encode_shard(pixels, labels, ${numClasses}).blob)
`;
  return new Uint8Array(execFileSync("python3", ["-c", code], { cwd: repo }));
}

test("reads a shard the data server's encoder wrote", async () => {
  const shard = await parseShard(pythonShard(10));
  assert.deepEqual([shard.count, shard.height, shard.width, shard.channels], [5, 4, 3, 2]);
  assert.equal(shard.pixels.length, 5 * 4 * 3 * 2);
  assert.deepEqual(Array.from(shard.labels), [0, 1, 2, 9, 1]);
});

test("uint16 labels for more than 256 classes", async () => {
  const shard = await parseShard(pythonShard(1000));
  assert.ok(shard.labels instanceof Uint16Array);
  assert.deepEqual(Array.from(shard.labels), [0, 1, 2, 999, 1]);
});

test("a corrupted entry fails its CRC check", async () => {
  const bytes = pythonShard(10);
  const entries = await unzip(bytes);
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  const broken = bytes.slice();
  const pixelsAt = findFirst(broken, "pixels.u8") + "pixels.u8".length;
  broken[pixelsAt + 3] ^= 0xff;
  await assert.rejects(parseShard(broken));
  assert.ok(entries.has("pixels.u8"));
});

test("something that is not a zip is refused", async () => {
  await assert.rejects(parseShard(new TextEncoder().encode("<html>not found</html>")), ShardFormatError);
});

function findFirst(bytes, text) {
  const needle = new TextEncoder().encode(text);
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) if (bytes[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
