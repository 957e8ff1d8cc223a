import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { encode, decode, float32 } from "../../mlitb/static/js/msgpack.js";

function python(code, input) {
  return execFileSync("python3", ["-c", code], { input });
}

test("round-trips every type the protocol uses", () => {
  const value = {
    type: "result", iteration: 70000, count: 1, neg: -5, neg16: -200, neg32: -70000, big: 2 ** 40,
    loss_sum: 2.5, zero: 0, nil: null, yes: true, no: false, text: "é".repeat(40), long: "x".repeat(70000),
    list: Array.from({ length: 20 }, (_, i) => i), nested: { a: [1, { b: "c" }] },
  };
  assert.deepEqual(decode(encode(value)), value);
});

test("typed arrays travel as bin and come back as float32", () => {
  const grad = new Float32Array([1.5, -2.25, 3e-8, 0]);
  const back = decode(encode({ grad }));
  assert.ok(back.grad instanceof Uint8Array);
  assert.deepEqual(Array.from(float32(back.grad)), Array.from(grad));
});

test("float32 copies a bin that is not 4-byte aligned", () => {
  const bytes = new Uint8Array(9);
  bytes.set(new Uint8Array(new Float32Array([7, 8]).buffer), 1);
  assert.deepEqual(Array.from(float32(bytes.subarray(1))), [7, 8]);
});

test("Python's msgpack reads what we write, bin as float32 bytes", () => {
  const frame = encode({ type: "result", iteration: 3, grad: new Float32Array([0.5, -1]), count: 2, loss_sum: 1.25, compute_ms: 12 });
  const out = python(
    "import sys, msgpack, numpy as np; m = msgpack.unpackb(sys.stdin.buffer.read(), raw=False);"
      + "print(m['type'], m['iteration'], np.frombuffer(m['grad'], '<f4').tolist(), m['count'], m['loss_sum'], m['compute_ms'])",
    Buffer.from(frame),
  ).toString().trim();
  assert.equal(out, "result 3 [0.5, -1.0] 2 1.25 12");
});

test("we read what Python's msgpack writes", () => {
  const bytes = python(
    "import sys, msgpack, numpy as np; sys.stdout.buffer.write(msgpack.packb({'type': 'params', 'iteration': 2**33,"
      + " 'params': np.arange(300, dtype='<f4').tobytes(), 'f': 0.1, 's': 'ü' * 300, 'l': list(range(70000)), 'neg': -2**40}, use_bin_type=True))",
  );
  const message = decode(new Uint8Array(bytes));
  assert.equal(message.type, "params");
  assert.equal(message.iteration, 2 ** 33);
  assert.equal(float32(message.params)[299], 299);
  assert.equal(message.f, 0.1);
  assert.equal(message.s, "ü".repeat(300));
  assert.equal(message.l.length, 70000);
  assert.equal(message.neg, -(2 ** 40));
});

test("truncated input is an error, not a partial value", () => {
  const frame = encode({ type: "hello", text: "abcdef" });
  assert.throws(() => decode(frame.subarray(0, frame.length - 2)), /unexpected end/);
});
