// The data worker: gets shards for the trainers and the tracker, from IndexedDB
// when cached there, else from the data server (a few downloads at a time,
// taking turns between the workers that asked, retrying with backoff while the
// data server is unreachable), caches what it downloads and keeps that cache
// within its limits (cache-policy.js).

import { ShardFormatError, fetchShard, shardUrl } from "../shards.js";
import { openShardCache } from "../shard-cache.js";
import { DEFAULT_CACHE_BYTES, cacheSummary, shardsOfGoneDatasets, shardsToEvict } from "../cache-policy.js";
import { retryDelayMs, sleep } from "../backoff.js";

const MAX_DOWNLOADS = 3;
const RETRY = { baseMs: 1000, maxMs: 30_000 };
const DATASET_CHECK_MS = 60_000;
const cachePromise = openShardCache();
const inFlight = new Map();
const queues = new Map();
const assignedByPort = new Map();
const datasetChecks = new Map();
let active = 0;
let turn = 0;
let datasetId = null;
let maxShards = Infinity;
// dataError: the last failure while the data server is unreachable (null once a download succeeds)
const figures = { downloading: 0, downloaded: 0, bytes: 0, fromCache: 0, failed: 0, retries: 0, dataError: null, retryInMs: 0 };
let summary = { shards: 0, allShards: 0, bytes: 0 };

function report() {
  self.postMessage({ type: "progress", ...figures, cached: summary.shards, cacheBytes: summary.bytes, cacheShards: summary.allShards });
}

async function summarize() {
  summary = cacheSummary(await (await cachePromise).entries(), datasetId);
  report();
}

self.onmessage = async ({ data }) => {
  if (data.type === "connect") {
    const port = data.port;
    queues.set(port, []);
    port.onmessage = ({ data: message }) => onPortMessage(port, message);
  } else if (data.type === "list") {
    datasetId = data.dataset;
    const ids = await (await cachePromise).ids(data.dataset);
    self.postMessage({ type: "list", dataset: data.dataset, ids });
    await summarize();
  }
};

function onPortMessage(port, message) {
  if (message.type === "need") need(port, message);
  else if (message.type === "assigned") {
    // what this trainer is assigned now: never evicted while it is
    assignedByPort.set(port, new Set(message.ids));
    if (Number.isFinite(message.cacheShards)) maxShards = message.cacheShards;
    enforceLimits();
  } else if (message.type === "gone") assignedByPort.delete(port);
  else if (message.type === "dataServer") checkDatasets(message.dataUrl);
}

async function need(port, { dataUrl, dataset, ids }) {
  const cache = await cachePromise;
  for (const id of ids) {
    const record = await cache.get(id);
    if (record) {
      figures.fromCache++;
      port.postMessage({ type: "shard", id, shard: record });
    } else {
      queues.get(port).push({ id, url: shardUrl(dataUrl, dataset, id), dataset });
      figures.downloading++;
    }
  }
  report();
  pump();
}

function nextJob() {
  const ports = [...queues.keys()];
  for (let k = 0; k < ports.length; k++) {
    const port = ports[(turn + k) % ports.length];
    const job = queues.get(port).shift();
    if (job) {
      turn = (turn + k + 1) % ports.length;
      return { port, ...job };
    }
  }
  return null;
}

function pump() {
  while (active < MAX_DOWNLOADS) {
    const job = nextJob();
    if (!job) return;
    active++;
    download(job).finally(() => {
      active--;
      figures.downloading--;
      report();
      pump();
    });
  }
}

const permanent = (error) => error instanceof ShardFormatError || error?.permanent === true;

// Fetch until it works; only an answer that retrying cannot change (4xx, a broken zip) gives up.
async function fetchWithRetries(url) {
  for (let attempt = 0; ; attempt++) {
    try {
      const shard = await fetchShard(url);
      if (figures.dataError) {
        figures.dataError = null;
        figures.retryInMs = 0;
        report();
      }
      return shard;
    } catch (error) {
      if (permanent(error)) throw error;
      const delay = retryDelayMs(attempt, RETRY);
      figures.retries++;
      figures.dataError = `${error?.message || error}`;
      figures.retryInMs = delay;
      report();
      await sleep(delay);
    }
  }
}

async function download({ port, id, url, dataset }) {
  try {
    let promise = inFlight.get(id);
    if (!promise) {
      promise = fetchWithRetries(url).then(async (shard) => {
        const record = { id, dataset, stored: Date.now(), ...shard };
        figures.downloaded++;
        figures.bytes += shard.pixels.byteLength + shard.labels.byteLength;
        await (await cachePromise).put(record);
        await enforceLimits();
        return record;
      });
      inFlight.set(id, promise);
      promise.finally(() => inFlight.delete(id)).catch(() => {});
    }
    port.postMessage({ type: "shard", id, shard: await promise });
  } catch (error) {
    figures.failed++;
    port.postMessage({ type: "shard-error", id, message: String(error?.message || error) });
  }
}

let enforcing = Promise.resolve();

// Drop least recently used shards beyond the limits; never one a trainer is assigned.
function enforceLimits() {
  enforcing = enforcing.then(async () => {
    const cache = await cachePromise;
    const keep = new Set(inFlight.keys());
    for (const ids of assignedByPort.values()) for (const id of ids) keep.add(id);
    await cache.remove(shardsToEvict(await cache.entries(), { maxBytes: DEFAULT_CACHE_BYTES, maxShards, keep }));
    await summarize();
  }).catch(() => {});
  return enforcing;
}

// Once in a while, drop the shards of datasets the data server no longer has.
async function checkDatasets(dataUrl) {
  const last = datasetChecks.get(dataUrl) ?? -Infinity;
  if (performance.now() - last < DATASET_CHECK_MS) return;
  datasetChecks.set(dataUrl, performance.now());
  try {
    const response = await fetch(`${dataUrl.replace(/\/$/, "")}/datasets`);
    if (!response.ok) return;
    const { datasets } = await response.json();
    if (!Array.isArray(datasets)) return;
    const cache = await cachePromise;
    await cache.remove(shardsOfGoneDatasets(await cache.entries(), datasets.map((d) => d.id)));
    await summarize();
  } catch {
    datasetChecks.delete(dataUrl); // unreachable now: check again on the next welcome
  }
}
