// A trainer: its own WebSocket to the master; gets shards through the data
// worker; for each `work`, computes gradients with the JS engine until the
// budget runs out and sends their sum. Reports what it does to the boss.

import { chooseEngine } from "../../engine/choose.js";
import { float32 } from "../msgpack.js";
import { MasterSocket } from "../master-socket.js";
import { OrderedExamples, normalizationTable } from "../examples.js";
import { MAX_BATCHES, batchSeed } from "../work-order.js";
import { retryDelayMs } from "../backoff.js";
import { LinkCodecs, OFFER, runLocalSteps } from "../link-codecs.js";

const MAX_BATCH = 128;
const FIRST_BATCH = 4;
const FINAL_CODES = new Set(["unknown_project", "protocol_version"]);

let socket, dataPort, net, netLayers, options, engine = null;
let project = null, dataset = null, limits = { cache_shards: 64 };
let params = null, paramsIteration = -1;
let link = null; // this connection's codecs and local steps (welcome.codecs)
let assigned = [];
const held = new Map();
const requested = new Set();
const shardFailures = new Map();
let msPerExample = 0;
let hidden = false;
let working = Promise.resolve();

const tell = (message) => self.postMessage(message);
const setState = (state, detail = "") => tell({ type: "state", state, detail });

self.onmessage = async ({ data }) => {
  if (data.type === "start") await start(data);
  else if (data.type === "hidden") {
    hidden = data.hidden;
    socket?.send({ type: "state", hidden });
  } else if (data.type === "stop") {
    socket?.close();
    dataPort?.postMessage({ type: "gone" });
    dataPort?.close();
    tell({ type: "stopped" });
    self.close();
  }
};

async function start(config) {
  options = config;
  dataPort = config.dataPort;
  dataPort.onmessage = ({ data }) => onShard(data);
  hidden = config.hidden;
  if (config.layers) await buildNet(config.layers);
  setState("connecting");
  socket = new MasterSocket(config.wsUrl, {
    hello: () => ({
      type: "hello",
      protocol: 1,
      role: "trainer",
      project: config.project,
      client: {
        kind: "browser", engine: net?.backend ?? "js", cores: config.cores, agent: config.agent, volunteer: config.volunteer,
        adapter: net?.backend === "webgpu" ? engine.adapter : "", examples_per_s: engine?.examplesPerSecond ?? 0,
      },
      cached: [...new Set([...held.keys(), ...config.cached])],
      predict: config.predict !== false,
      codecs: OFFER,
    }),
    onMessage,
    onStatus: (status, { retryInMs, attempt } = {}) => {
      if (status === "connected") {
        if (hidden) socket.send({ type: "state", hidden });
        setState("connecting");
      } else if (status === "refused") setState("stopped");
      else setState("reconnecting", `attempt ${attempt}, next in ${(retryInMs / 1000).toFixed(1)} s`);
    },
  });
}

// The engine by calibration on this net (or the volunteer's choice); a lost GPU hands over to WASM.
async function buildNet(layers) {
  const choice = options.simd === false ? "js" : options.engine ?? "auto";
  engine = await chooseEngine(layers, {
    choice,
    onChange: (name, why) => tell({ type: "engine", engine: name, detail: why }),
  });
  net = engine.net;
  netLayers = JSON.stringify(layers);
  tell({ type: "engine", engine: engine.engine, adapter: engine.adapter, examplesPerSecond: engine.examplesPerSecond, detail: engine.notes.join("; ") });
}

async function onMessage(message) {
  switch (message.type) {
    case "welcome":
      project = message.project;
      dataset = message.dataset;
      limits = { ...limits, ...message.limits };
      if (!net || netLayers !== JSON.stringify(project.layers)) await buildNet(project.layers);
      link = new LinkCodecs(project.param_count, message.codecs ?? {});
      params = null;
      paramsIteration = -1;
      tell({ type: "welcome", clientId: message.client_id, engine: net.backend, project: project.id });
      if (dataset?.url) dataPort.postMessage({ type: "dataServer", dataUrl: dataset.url });
      setState(project.status === "paused" ? "paused" : "waiting");
      break;
    case "params": {
      // null when a delta's base is not what this trainer holds: it skips that work (codecs.js)
      const got = link ? link.onParams(message) : { iteration: message.iteration, values: float32(message.params) };
      params = got?.values ?? null;
      paramsIteration = got?.iteration ?? -1;
      break;
    }
    case "assign":
      assigned = message.shards.map((s) => s.id);
      dataPort.postMessage({ type: "assigned", ids: assigned, cacheShards: limits.cache_shards });
      request(assigned.filter((id) => !held.has(id) && !requested.has(id)));
      evict();
      if (held.size) socket.send({ type: "cached", shards: [...held.keys()] });
      break;
    case "work":
      // one at a time: the WebGPU engine answers asynchronously
      working = working.then(() => work(message)).catch((e) => tell({ type: "error", code: "engine", message: `training failed: ${e.message}` }));
      break;
    case "predict":
      onPredict(message);
      break;
    case "idle":
      setState(message.reason === "paused" ? "paused" : message.reason === "excluded" ? "excluded" : "waiting");
      break;
    case "error":
      tell({ type: "error", code: message.code, message: message.message, fatal: message.fatal });
      if (message.fatal && FINAL_CODES.has(message.code)) socket.refuse();
      break;
  }
}

function request(ids) {
  if (!ids.length || !dataset) return;
  for (const id of ids) requested.add(id);
  setState("downloading", `${ids.length} shard${ids.length > 1 ? "s" : ""}`);
  dataPort.postMessage({ type: "need", dataUrl: dataset.url, dataset: dataset.id, ids });
}

function onShard(message) {
  requested.delete(message.id);
  if (message.type === "shard-error") {
    // the data worker already retried what retrying could fix; try again much later
    const failures = shardFailures.get(message.id) ?? 0;
    shardFailures.set(message.id, failures + 1);
    tell({ type: "error", code: "shard", message: `shard ${message.id}: ${message.message}` });
    setTimeout(() => assigned.includes(message.id) && !held.has(message.id) && request([message.id]),
      retryDelayMs(failures, { baseMs: 5000, maxMs: 120_000 }));
    return;
  }
  shardFailures.delete(message.id);
  held.set(message.id, message.shard);
  evict();
  socket.send({ type: "cached", shards: [...held.keys()] });
  tell({ type: "cached", count: held.size });
}

// Keep what is assigned; keep other shards only up to limits.cache_shards.
function evict() {
  const spare = [...held.keys()].filter((id) => !assigned.includes(id));
  const excess = held.size - Math.max(limits.cache_shards, assigned.length);
  for (const id of spare.slice(0, Math.max(0, excess))) held.delete(id);
}

// The work's examples span every listed shard in list order (docs/protocol.md, `work`): a result is
// a prefix of their seeded order, so with a shard missing no honest result is possible.
async function work({ iteration, budget_ms: budgetMs, shards, seed = 0 }) {
  const ready = shards.length > 0 && shards.every((id) => held.has(id));
  if (!ready || !params || paramsIteration !== iteration) {
    setState("waiting", ready ? "for parameters" : "for data");
    return;
  }
  setState("training");
  const iterationParams = params; // a params frame may arrive while a gradient is awaited
  const started = performance.now();
  const steps = link?.localSteps ?? 1;
  const table = normalizationTable(project.normalization);
  const sweepFrom = (w, h, deadline) => {
    const stepSeed = (seed + h) >>> 0;
    return sweep(w, new OrderedExamples(shards.map((id) => held.get(id)), stepSeed), stepSeed, deadline, table);
  };
  let result, stepBatches = null;
  if (steps <= 1) {
    result = await sweepFrom(iterationParams, 0, started + budgetMs);
  } else {
    // Local steps (docs/protocol.md): H local SGD steps, each on its share of the budget and on the
    // example order of seed + h; the result is (start − end) × count.
    const parts = [];
    result = await runLocalSteps(async (w, h) => {
      // a fresh array per step: the engines keep their packed weights by the array's identity
      const r = await sweepFrom(Float32Array.from(w), h, started + ((h + 1) * budgetMs) / steps);
      parts.push(r.batches);
      return r;
    }, iterationParams, steps, link.localLearningRate);
    result.batches = parts.flat();
    stepBatches = parts.map((b) => b.length);
  }
  const { count, lossSum, correct, batches } = result;
  const computeMs = performance.now() - started;
  const encoded = link ? link.encodeResult(result.gradSum) : { codec: "f32", grad: result.gradSum };
  const message = {
    type: "result",
    iteration,
    grad: encoded.grad,
    count,
    loss_sum: lossSum,
    correct,
    compute_ms: computeMs,
    batches,
  };
  if (encoded.codec !== "f32") message.codec = encoded.codec;
  if (stepBatches) message.steps = stepBatches;
  const sent = socket.send(message);
  tell({ type: "result", iteration, count, computeMs, lossSum, correct, sent });
}

// Gradient sums over the order's examples, batch by batch, until `deadline` (at least one batch).
async function sweep(w, examples, seed, deadline, table) {
  const inputSize = examples.shards[0].pixels.length / examples.shards[0].count;
  const P = net.paramCount;
  const gradSum = new Float32Array(P);
  const batches = [];
  let count = 0, lossSum = 0, correct = 0;
  let x = null, labels = null;
  while (examples.left > 0 && batches.length < MAX_BATCHES) {
    const left = deadline - performance.now();
    let n = msPerExample ? Math.floor((0.9 * left) / msPerExample) : FIRST_BATCH;
    n = Math.min(net.maxBatch ?? MAX_BATCH, n); // a GPU engine takes larger batches
    if (n < 1) {
      if (count > 0) break;
      n = 1;
    }
    if (!x || x.length < n * inputSize) {
      x = new Float32Array(Math.max(n, FIRST_BATCH) * inputSize);
      labels = new Int32Array(Math.max(n, FIRST_BATCH));
    }
    const position = examples.position;
    n = examples.batch(n, x, labels, table);
    const t0 = performance.now();
    const g = await net.gradient(w, x, labels, n, { seed: batchSeed(seed >>> 0, position) });
    const ms = (performance.now() - t0) / n;
    msPerExample = msPerExample ? 0.7 * msPerExample + 0.3 * ms : ms;
    for (let i = 0; i < P; i++) gradSum[i] += g.gradSum[i];
    count += g.count;
    lossSum += g.lossSum;
    correct += g.correct;
    batches.push(n);
  }
  return { gradSum, count, lossSum, correct, batches };
}

// Prediction chunks (`predict` frames): queued, and answered one per task, so a `work` that arrives
// meanwhile runs before the next chunk (a chunk is sized by the master to ~150 ms of this worker's
// speed): training deadlines hold. A chunk is bound to its parameters on arrival; the frame carries
// them the first time this connection gets a chunk of an iteration.
const predictQueue = [];
let predictParams = null, predictIteration = -1, predictScheduled = false;

function onPredict({ key, iteration, count, pixels, params: chunkParams }) {
  if (chunkParams) {
    predictParams = float32(chunkParams);
    predictIteration = iteration;
  }
  const weights = predictIteration === iteration ? predictParams : paramsIteration === iteration ? params : null;
  if (!weights) return; // no parameters of that iteration: the master sends the chunk elsewhere at its deadline
  predictQueue.push({ key, count, pixels, weights });
  if (!predictScheduled) {
    predictScheduled = true;
    setTimeout(answerNextChunk, 0);
  }
}

function answerNextChunk() {
  predictScheduled = false;
  if (!predictQueue.length) return;
  // the smallest first: a small request's chunk never waits behind a big batch's queued beside it
  const smallest = predictQueue.reduce((best, c, i) => (c.count < predictQueue[best].count ? i : best), 0);
  const [chunk] = predictQueue.splice(smallest, 1);
  const started = performance.now();
  const table = normalizationTable(project.normalization);
  const x = new Float32Array(chunk.pixels.length);
  for (let i = 0; i < x.length; i++) x[i] = table[chunk.pixels[i]];
  const probabilities = net.predict(chunk.weights, x, chunk.count);
  socket.send({ type: "prediction", key: chunk.key, probabilities, compute_ms: performance.now() - started });
  tell({ type: "predicted", count: chunk.count });
  if (predictQueue.length) {
    predictScheduled = true;
    setTimeout(answerNextChunk, 0);
  }
}
