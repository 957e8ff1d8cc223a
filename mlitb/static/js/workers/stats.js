// The tracker (MLitB's stats worker): watches the live parameters as a
// `tracker` and measures test error on the dataset's test split, at most
// about once a second, always on the newest parameters.

import { createNet } from "../../engine/net.js";
import { float32 } from "../msgpack.js";
import { MasterSocket } from "../master-socket.js";
import { normalizationTable } from "../examples.js";

const CHUNK = 128;
const MIN_GAP_MS = 1000;

let socket, dataPort, net, project;
let latest = null;
let evaluating = false;
let lastEvaluated = -1;
let lastTime = 0;
let test = null;
const testShards = new Map();
let wanted = [];

self.onmessage = async ({ data }) => {
  if (data.type === "start") start(data);
  else if (data.type === "stop") {
    socket?.close();
    dataPort?.close();
    self.close();
  }
};

function start({ wsUrl, project: projectId, dataPort: port, maxExamples = 2000, simd }) {
  dataPort = port;
  dataPort.onmessage = ({ data }) => {
    if (data.type !== "shard") return;
    testShards.set(data.id, data.shard);
    if (wanted.every((id) => testShards.has(id))) test = packTest(maxExamples);
    schedule();
  };
  socket = new MasterSocket(wsUrl, {
    hello: () => ({ type: "hello", protocol: 1, role: "tracker", project: projectId, client: { kind: "browser", engine: "js", cores: 1, agent: "mlitb tracker" } }),
    onMessage: async (message) => {
      if (message.type === "welcome") {
        project = message.project;
        net = await createNet(project.layers, { simd });
        wanted = message.dataset.test.map((s) => s.id);
        const missing = wanted.filter((id) => !testShards.has(id));
        if (missing.length) dataPort.postMessage({ type: "need", dataUrl: message.dataset.url, dataset: message.dataset.id, ids: missing });
        self.postMessage({ type: "welcome", testShards: wanted.length });
      } else if (message.type === "params") {
        latest = { iteration: message.iteration, params: float32(message.params) };
        schedule();
      }
    },
  });
}

function packTest(maxExamples) {
  const shards = wanted.map((id) => testShards.get(id));
  const total = Math.min(maxExamples, shards.reduce((n, s) => n + s.count, 0));
  const size = shards[0].pixels.length / shards[0].count;
  const table = normalizationTable(project.normalization);
  const x = new Float32Array(total * size);
  const labels = new Int32Array(total);
  let e = 0;
  for (const shard of shards) {
    for (let i = 0; i < shard.count && e < total; i++, e++) {
      const pixels = shard.pixels.subarray(i * size, (i + 1) * size);
      for (let j = 0; j < size; j++) x[e * size + j] = table[pixels[j]];
      labels[e] = shard.labels[i];
    }
  }
  return { x, labels, count: total, size };
}

function schedule() {
  if (evaluating || !test || !net || !latest || latest.iteration === lastEvaluated) return;
  const wait = Math.max(0, lastTime + MIN_GAP_MS - performance.now());
  evaluating = true;
  setTimeout(evaluate, wait);
}

async function evaluate() {
  const { iteration, params } = latest;
  const k = net.numClasses;
  let correct = 0, loss = 0;
  for (let start = 0; start < test.count; start += CHUNK) {
    const n = Math.min(CHUNK, test.count - start);
    const probs = net.predict(params, test.x.subarray(start * test.size, (start + n) * test.size), n);
    for (let e = 0; e < n; e++) {
      const row = probs.subarray(e * k, (e + 1) * k);
      let best = 0;
      for (let c = 1; c < k; c++) if (row[c] > row[best]) best = c;
      const label = test.labels[start + e];
      if (best === label) correct++;
      loss -= Math.log(Math.max(row[label], 1e-12));
    }
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  lastEvaluated = iteration;
  lastTime = performance.now();
  evaluating = false;
  self.postMessage({ type: "eval", iteration, time: Date.now() / 1000, accuracy: correct / test.count, loss: loss / test.count, examples: test.count });
  schedule();
}
