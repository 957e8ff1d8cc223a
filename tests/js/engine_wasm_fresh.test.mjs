// The committed kernels.wasm is built from the committed kernels.c by scripts/build-wasm.sh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const root = new URL("../../", import.meta.url);
const record = readFileSync(new URL("mlitb/static/engine/kernels.wasm.sha256", root), "utf8").trim().split("\n");

test("kernels.wasm.sha256 names the build scripts, the C source and both binaries", () => {
  assert.deepEqual(record.map((line) => line.split(/\s+/)[1]).sort(),
    ["mlitb/static/engine/kernels-relaxed.wasm", "mlitb/static/engine/kernels.c", "mlitb/static/engine/kernels.wasm",
      "scripts/build-wasm.sh", "scripts/relaxed_opcodes.py"]);
});

for (const line of record) {
  const [hash, path] = line.split(/\s+/);
  test(`${path} is what scripts/build-wasm.sh last built from (rerun it if not)`, () => {
    assert.equal(createHash("sha256").update(readFileSync(new URL(path, root))).digest("hex"), hash);
  });
}
