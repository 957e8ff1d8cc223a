// What the volunteer page tells a volunteer before they press Contribute, and
// how many trainers this device may run. Pure: tested in tests/js/.

// Bytes of the training shards a browser may download (all of them when it trains alone).
export function downloadBytes(manifest) {
  const shards = manifest?.splits?.train?.shards ?? [];
  return { bytes: shards.reduce((n, s) => n + (s.bytes || 0), 0), shards: shards.length };
}

// The trainer count a volunteer asked for, capped at the device's cores
// (each trainer keeps one core busy; more only slow each other down).
export function capTrainers(wanted, cores) {
  const limit = Math.max(1, Math.floor(cores) || 1);
  const asked = Math.max(1, Math.floor(Number(wanted)) || 1);
  const count = Math.min(asked, limit);
  const note = asked > limit ? `This device has ${limit} CPU core${limit === 1 ? "" : "s"}: at most ${limit} trainer${limit === 1 ? "" : "s"}, since more would only slow each other down.` : "";
  return { count, limit, note };
}

// One paragraph: the download, the CPU and the battery, in plain words.
export function deviceStatement({ bytes, shards, trainers, cores, formatBytes }) {
  const data = shards
    ? `Contributing downloads up to ${formatBytes(bytes)} of training data (${shards} shard${shards === 1 ? "" : "s"}) once; it stays in this browser's cache for the next visit.`
    : "Contributing downloads the project's training data once; it stays in this browser's cache for the next visit.";
  const cpu = `While it trains, ${trainers} trainer${trainers === 1 ? "" : "s"} keep${trainers === 1 ? "s" : ""} ${trainers === 1 ? "one CPU core" : `${trainers} CPU cores`} of this device's ${cores} busy, so a laptop or phone runs warmer and its battery drains faster.`;
  return `${data} ${cpu} Press Stop or close the tab at any time.`;
}
