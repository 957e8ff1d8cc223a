// node bench/node.mjs [seconds] -> one JSON line {"<net>/<backend>": examples/s}
import { readFileSync } from "node:fs";
import { measureAll } from "./measure.js";

const nets = JSON.parse(readFileSync(new URL("./nets.json", import.meta.url), "utf8"));
console.log(JSON.stringify(await measureAll(nets, Number(process.argv[2] ?? 1.5))));
