// Shard zips (docs/data.md): walk the local file headers and inflate each entry
// with the browser's own DecompressionStream('deflate-raw').

const LOCAL_HEADER = 0x04034b50;
const textDecoder = new TextDecoder();

export class ShardFormatError extends Error {}

// The data server answered with an error status (`status`): 4xx will not get better by retrying.
export class ShardHttpError extends Error {
  constructor(url, status) {
    super(`shard ${url}: HTTP ${status}`);
    this.status = status;
  }

  get permanent() {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
}

export function shardUrl(dataUrl, datasetId, shardId) {
  return `${dataUrl.replace(/\/$/, "")}/datasets/${encodeURIComponent(datasetId)}/shards/${encodeURIComponent(shardId)}`;
}

export async function fetchShard(url, { signal } = {}) {
  const response = await fetch(url, { signal });
  if (!response.ok) throw new ShardHttpError(url, response.status);
  return parseShard(new Uint8Array(await response.arrayBuffer()));
}

// {count, height, width, channels, pixels: Uint8Array, labels: Uint8Array | Uint16Array}
export async function parseShard(zipBytes) {
  const entries = await unzip(zipBytes);
  const headerBytes = entries.get("header.json");
  if (!headerBytes) throw new ShardFormatError("shard has no header.json");
  const header = JSON.parse(textDecoder.decode(headerBytes));
  if (header.format !== "mlitb-shard" || header.version !== 1) throw new ShardFormatError("not a version 1 mlitb-shard");
  const { count, height, width, channels } = header;
  const pixels = entries.get("pixels.u8");
  if (!pixels || pixels.length !== count * height * width * channels) throw new ShardFormatError("pixels.u8 does not match header.json");
  let labels;
  if (header.label_dtype === "uint8") labels = entries.get("labels.u8");
  else if (header.label_dtype === "uint16") {
    const raw = entries.get("labels.u16");
    labels = raw && littleEndianUint16(raw);
  }
  if (!labels || labels.length !== count) throw new ShardFormatError("labels do not match header.json");
  return { count, height, width, channels, pixels, labels };
}

// Map name -> Uint8Array for every entry, verified against its CRC-32.
export async function unzip(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entries = new Map();
  let pos = 0;
  while (pos + 30 <= bytes.length && view.getUint32(pos, true) === LOCAL_HEADER) {
    const flags = view.getUint16(pos + 6, true);
    const method = view.getUint16(pos + 8, true);
    const crc = view.getUint32(pos + 14, true);
    const compressedSize = view.getUint32(pos + 18, true);
    const size = view.getUint32(pos + 22, true);
    const nameLength = view.getUint16(pos + 26, true);
    const extraLength = view.getUint16(pos + 28, true);
    if (flags & 0x08) throw new ShardFormatError("zip entries with data descriptors are not supported");
    const name = textDecoder.decode(bytes.subarray(pos + 30, pos + 30 + nameLength));
    const start = pos + 30 + nameLength + extraLength;
    const end = start + compressedSize;
    if (end > bytes.length) throw new ShardFormatError(`zip entry ${name} runs past the end`);
    const stored = bytes.subarray(start, end);
    let data;
    if (method === 0) data = stored;
    else if (method === 8) data = await inflateRaw(stored);
    else throw new ShardFormatError(`zip entry ${name} uses unsupported method ${method}`);
    if (data.length !== size) throw new ShardFormatError(`zip entry ${name} has ${data.length} bytes, header says ${size}`);
    if (crc32(data) !== crc) throw new ShardFormatError(`zip entry ${name} fails its CRC check`);
    entries.set(name, data);
    pos = end;
  }
  if (entries.size === 0) throw new ShardFormatError("not a zip file");
  return entries;
}

export async function inflateRaw(compressed) {
  const stream = new Blob([compressed]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

let crcTable;

export function crc32(bytes) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function littleEndianUint16(bytes) {
  const out = new Uint16Array(bytes.length >> 1);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}
