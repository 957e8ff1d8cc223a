// node bench/node.mjs [seconds] -> one JSON line {"<net>/<backend>": examples/s}
import { readFileSync } from "node:fs";
import v8 from "node:v8";
import { measureAll } from "./measure.js";

v8.setFlagsFromString("--experimental-wasm-relaxed-simd"); // shipped in Chromium; behind a flag in Node 20
const nets = JSON.parse(readFileSync(new URL("./nets.json", import.meta.url), "utf8"));
console.log(JSON.stringify(await measureAll(nets, Number(process.argv[2] ?? 1.5))));
