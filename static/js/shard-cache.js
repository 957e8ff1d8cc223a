// Decoded shards in IndexedDB, so a reload does not download them again.
// Works in pages and workers; without IndexedDB it degrades to no cache.

const DB_NAME = "mlitb-shards";
const STORE = "shards";

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export async function openShardCache() {
  if (typeof indexedDB === "undefined") return nullCache;
  try {
    const open = indexedDB.open(DB_NAME, 1);
    open.onupgradeneeded = () => {
      const store = open.result.createObjectStore(STORE, { keyPath: "id" });
      store.createIndex("dataset", "dataset");
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

  store(mode) {
    return this.db.transaction(STORE, mode).objectStore(STORE);
  }

  get(id) {
    return promised(this.store("readonly").get(id)).catch(() => undefined);
  }

  put(record) {
    return promised(this.store("readwrite").put(record)).catch(() => undefined);
  }

  ids(datasetId) {
    return promised(this.store("readonly").index("dataset").getAllKeys(datasetId)).catch(() => []);
  }

  remove(id) {
    return promised(this.store("readwrite").delete(id)).catch(() => undefined);
  }
}

const nullCache = {
  get: async () => undefined,
  put: async () => undefined,
  ids: async () => [],
  remove: async () => undefined,
};
