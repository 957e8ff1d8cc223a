// The JS codecs against the shared vectors (tests/vectors/codecs/codecs.json),
// which mlitb/codecs.py wrote: same bytes, same decoded values, same residuals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  encodeVector, decodeVector, ErrorFeedback, ParamsReceiver, BaseMismatch, CodecError, toHalf, fromHalf, topkCount,
} from "../../mlitb/static/js/codecs.js";

const v = JSON.parse(readFileSync(new URL("../vectors/codecs/codecs.json", import.meta.url), "utf8"));
const bytes = (b64) => new Uint8Array(Buffer.from(b64, "base64"));
const floats = (b64) => { const b = Buffer.from(b64, "base64"); return new Float32Array(b.buffer, b.byteOffset, b.length / 4).slice(); };
const hex = (u8) => Buffer.from(u8).toString("hex");

test("the shared vectors cover every codec", () => {
  assert.deepEqual([...new Set(v.vectors.map((e) => e.codec))].sort(), ["f16", "f32", "i8", "topk"]);
  assert.equal(v.feedback.length, 3);
  assert.equal(v.params.length, 3);
});

for (const e of v.vectors) {
  test(`encodes and decodes ${e.name} as numpy does`, () => {
    const encoded = encodeVector(e.codec, floats(e.input), { k: e.k });
    assert.equal(hex(encoded), hex(bytes(e.encoded)));
    assert.deepEqual(Array.from(decodeVector(e.codec, bytes(e.encoded), e.size)), Array.from(floats(e.decoded)));
  });
}

for (const e of v.feedback) {
  test(`error feedback ${e.name}: same bytes each iteration, same residual`, () => {
    const ef = new ErrorFeedback(e.codec, e.size, e.topk_ratio);
    e.inputs.forEach((input, i) => assert.equal(hex(ef.encode(floats(input))), hex(bytes(e.encoded[i])), `iteration ${i}`));
    assert.deepEqual(Array.from(ef.residual), Array.from(floats(e.residual)));
    // Nothing is lost: what the master decoded plus the residual is what was computed.
    const sent = new Float64Array(e.size), computed = new Float64Array(e.size);
    e.inputs.forEach((input, i) => {
      const d = decodeVector(e.codec, bytes(e.encoded[i]), e.size), g = floats(input);
      for (let j = 0; j < e.size; j++) { sent[j] += d[j]; computed[j] += g[j]; }
    });
    for (let j = 0; j < e.size; j++) assert.ok(Math.abs(sent[j] + ef.residual[j] - computed[j]) < 1e-4, `index ${j}`);
  });
}

for (const p of v.params) {
  test(`parameter stream ${p.name}: a client holds what the master mirrors, and the parameters on full frames`, () => {
    const client = new ParamsReceiver(floats(p.inputs[0]).length);
    p.frames.forEach((f, i) => {
      const held = client.apply(p.iterations[i], f.codec, bytes(f.data), f.base);
      assert.deepEqual(Array.from(held), Array.from(floats(p.held[i])), `frame ${i}`);
      if (f.codec === "f32") assert.deepEqual(Array.from(held), Array.from(floats(p.inputs[i])), `full frame ${i} is bit for bit`);
    });
  });
}

test("a delta against another base is refused and the client forgets its parameters", () => {
  const p = v.params.find((e) => e.codec === "delta-i8");
  const client = new ParamsReceiver(floats(p.inputs[0]).length);
  const f0 = p.frames[0], f3 = p.frames[3];
  client.apply(p.iterations[0], f0.codec, bytes(f0.data), f0.base);
  assert.throws(() => client.apply(p.iterations[3], f3.codec, bytes(f3.data), f3.base), BaseMismatch);
  assert.equal(client.params, null);
});

test("half conversion rounds to nearest even, saturates and keeps subnormals", () => {
  assert.equal(toHalf(1 + 2 ** -11), 0x3c00);
  assert.equal(toHalf(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(toHalf(1e6), 0x7bff);
  assert.equal(toHalf(-1e6), 0xfbff);
  assert.equal(toHalf(2 ** -24), 0x0001);
  assert.equal(toHalf(2 ** -25), 0x0000);
  assert.equal(fromHalf(0x7bff), 65504);
  assert.equal(fromHalf(0x0001), 2 ** -24);
});

test("top-k keeps at least one value and never more than the vector", () => {
  assert.equal(topkCount(10, 0.01), 1);
  assert.equal(topkCount(1000, 0.01), 10);
  assert.equal(topkCount(3, 1), 3);
});

test("decoders refuse hostile bytes with the reason", () => {
  const nan = new Uint8Array(new Float32Array([1, NaN]).buffer);
  assert.throws(() => decodeVector("f32", nan, 2), /non-finite value at index 1/);
  assert.throws(() => decodeVector("f32", new Uint8Array(7), 2), /7 bytes, expected 8/);
  assert.throws(() => decodeVector("f16", new Uint8Array([0, 0x7c]), 1), /non-finite/);
  const i8 = new Uint8Array(5); new DataView(i8.buffer).setFloat32(0, -1, true);
  assert.throws(() => decodeVector("i8", i8, 1), /scale 0 is -1/);
  const i8min = new Uint8Array(5); new DataView(i8min.buffer).setFloat32(0, 1, true); i8min[4] = 0x80;
  assert.throws(() => decodeVector("i8", i8min, 1), /-128/);
  const topk = (k, idx) => { const b = new Uint8Array(4 + 8 * idx.length); const d = new DataView(b.buffer); d.setUint32(0, k, true); idx.forEach((i, j) => { d.setUint32(4 + 4 * j, i, true); d.setFloat32(4 + 4 * idx.length + 4 * j, 1, true); }); return b; };
  assert.throws(() => decodeVector("topk", topk(2, [1, 9]), 5), /index 9 is out of range/);
  assert.throws(() => decodeVector("topk", topk(2, [3, 3]), 5), /strictly increasing/);
  assert.throws(() => decodeVector("topk", topk(9, []), 5), /count 9 exceeds/);
  assert.throws(() => decodeVector("topk", topk(2, [1]), 5), /expected 20/);
  assert.throws(() => decodeVector("zip", new Uint8Array(4), 1), CodecError);
});
