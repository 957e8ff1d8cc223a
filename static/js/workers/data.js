// The data worker: gets shards for the trainers and the tracker, from IndexedDB
// when cached there, else from the data server (a few downloads at a time,
// taking turns between the workers that asked), and caches what it downloads.

import { fetchShard, shardUrl } from "../shards.js";
import { openShardCache } from "../shard-cache.js";

const MAX_DOWNLOADS = 3;
const cachePromise = openShardCache();
const inFlight = new Map();
const queues = new Map();
let active = 0;
let turn = 0;
const figures = { downloading: 0, downloaded: 0, bytes: 0, fromCache: 0, failed: 0 };
const knownCached = new Set();

function report() {
  self.postMessage({ type: "progress", ...figures, cached: knownCached.size });
}

self.onmessage = async ({ data }) => {
  if (data.type === "connect") {
    const port = data.port;
    queues.set(port, []);
    port.onmessage = ({ data: request }) => request.type === "need" && need(port, request);
  } else if (data.type === "list") {
    const ids = await (await cachePromise).ids(data.dataset);
    for (const id of ids) knownCached.add(id);
    self.postMessage({ type: "list", dataset: data.dataset, ids });
    report();
  }
};

async function need(port, { dataUrl, dataset, ids }) {
  const cache = await cachePromise;
  for (const id of ids) {
    const record = await cache.get(id);
    if (record) {
      figures.fromCache++;
      knownCached.add(id);
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

async function download({ port, id, url, dataset }) {
  try {
    let promise = inFlight.get(id);
    if (!promise) {
      promise = fetchShard(url).then(async (shard) => {
        const record = { id, dataset, stored: Date.now(), ...shard };
        figures.downloaded++;
        figures.bytes += shard.pixels.byteLength + shard.labels.byteLength;
        knownCached.add(id);
        await (await cachePromise).put(record);
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
