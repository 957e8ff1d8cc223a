// What the browser's shard cache keeps: a pure policy over the cache's index
// entries {id, dataset, bytes, used} (used: when a shard was last read or
// written, ms), kept apart from the IndexedDB I/O so it can be tested alone.

export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;

// The shards to drop, least recently used first, until the cache holds at most
// maxBytes and at most maxShards. A shard in `keep` (assigned to a trainer right
// now) is never dropped, even if that leaves the cache above its limits.
export function shardsToEvict(entries, { maxBytes = DEFAULT_CACHE_BYTES, maxShards = Infinity, keep = new Set() } = {}) {
  let bytes = entries.reduce((n, e) => n + e.bytes, 0);
  let count = entries.length;
  const candidates = entries.filter((e) => !keep.has(e.id)).sort((a, b) => a.used - b.used || (a.id < b.id ? -1 : 1));
  const evicted = [];
  for (const entry of candidates) {
    if (bytes <= maxBytes && count <= maxShards) break;
    evicted.push(entry.id);
    bytes -= entry.bytes;
    count--;
  }
  return evicted;
}

// The shards of datasets the data server no longer lists.
export function shardsOfGoneDatasets(entries, liveDatasetIds) {
  const live = new Set(liveDatasetIds);
  return entries.filter((e) => !live.has(e.dataset)).map((e) => e.id);
}

// How much the cache holds: {shards, bytes} overall and `shards` of one dataset.
export function cacheSummary(entries, datasetId) {
  return {
    shards: entries.filter((e) => e.dataset === datasetId).length,
    allShards: entries.length,
    bytes: entries.reduce((n, e) => n + e.bytes, 0),
  };
}

// The bytes a decoded shard takes in the cache.
export const shardBytes = (shard) => shard.pixels.byteLength + shard.labels.byteLength;
