// Decoded shards in IndexedDB, so a reload does not download them again.
// Two object stores: `shards` (the records, pixels included) and `index`
// ({id, dataset, bytes, used} per shard, small, what cache-policy.js decides
// on). Works in pages and workers; without IndexedDB it degrades to no cache.

import { shardBytes } from "./cache-policy.js";

const DB_NAME = "mlitb-shards";
const VERSION = 2;
const SHARDS = "shards";
const INDEX = "index";

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function done(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = transaction.onabort = () => reject(transaction.error);
  });
}

export async function openShardCache() {
  if (typeof indexedDB === "undefined") return nullCache;
  try {
    const open = indexedDB.open(DB_NAME, VERSION);
    open.onupgradeneeded = () => {
      // Version 1 had no index of sizes: start that cache afresh.
      const db = open.result;
      for (const name of [...db.objectStoreNames]) db.deleteObjectStore(name);
      db.createObjectStore(SHARDS, { keyPath: "id" });
      db.createObjectStore(INDEX, { keyPath: "id" }).createIndex("dataset", "dataset");
    };
    return new ShardCache(await promised(open));
  } catch {
    return nullCache;
  }
}

class ShardCache {
  constructor(db) {
    this.db = db;
  }

  // The record, marked as just used.
  async get(id) {
    try {
      const transaction = this.db.transaction([SHARDS, INDEX], "readwrite");
      const record = await promised(transaction.objectStore(SHARDS).get(id));
      const entry = await promised(transaction.objectStore(INDEX).get(id));
      if (record && entry) transaction.objectStore(INDEX).put({ ...entry, used: Date.now() });
      await done(transaction);
      return record && entry ? record : undefined;
    } catch {
      return undefined;
    }
  }

  async put(record) {
    try {
      const transaction = this.db.transaction([SHARDS, INDEX], "readwrite");
      transaction.objectStore(SHARDS).put(record);
      transaction.objectStore(INDEX).put({ id: record.id, dataset: record.dataset, bytes: shardBytes(record), used: Date.now() });
      await done(transaction);
    } catch {
      /* a full or broken cache only means downloading again */
    }
  }

  ids(datasetId) {
    return promised(this.db.transaction(INDEX).objectStore(INDEX).index("dataset").getAllKeys(datasetId)).catch(() => []);
  }

  // Every index entry: {id, dataset, bytes, used}.
  entries() {
    return promised(this.db.transaction(INDEX).objectStore(INDEX).getAll()).catch(() => []);
  }

  // Drop every cached shard of every project (the volunteer's "clear cached data").
  async clear() {
    const transaction = this.db.transaction([SHARDS, INDEX], "readwrite");
    transaction.objectStore(SHARDS).clear();
    transaction.objectStore(INDEX).clear();
    await done(transaction);
  }

  close() {
    this.db.close();
  }

  async remove(ids) {
    if (!ids.length) return;
    try {
      const transaction = this.db.transaction([SHARDS, INDEX], "readwrite");
      for (const id of ids) {
        transaction.objectStore(SHARDS).delete(id);
        transaction.objectStore(INDEX).delete(id);
      }
      await done(transaction);
    } catch {
      /* tried again at the next eviction */
    }
  }
}

const nullCache = {
  get: async () => undefined,
  put: async () => undefined,
  ids: async () => [],
  entries: async () => [],
  remove: async () => undefined,
  clear: async () => undefined,
  close: () => undefined,
};

// What the cache holds now, all projects together: {shards, bytes}.
export async function cacheUsage() {
  const cache = await openShardCache();
  try {
    const entries = await cache.entries();
    return { shards: entries.length, bytes: entries.reduce((n, e) => n + (e.bytes || 0), 0) };
  } finally {
    cache.close();
  }
}

// Empty the cache; the next contribution downloads its shards again.
export async function clearShardCache() {
  const cache = await openShardCache();
  try {
    await cache.clear();
  } finally {
    cache.close();
  }
}
