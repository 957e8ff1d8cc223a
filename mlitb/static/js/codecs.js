// Compact encodings of results and parameters, byte for byte the same as
// mlitb/codecs.py (docs/protocol.md, "Codecs"; shared vectors in
// tests/vectors/codecs.json). Results: f32, f16, i8 (256-value blocks with a
// float32 scale each), topk (count, increasing uint32 indices, float32
// values), sent through ErrorFeedback so what a lossy codec drops is added to
// the next result. Parameters: f32, f16, and deltas (delta-f16, delta-i8)
// against the last parameters this client holds, applied by ParamsReceiver.
// Every quantity that decides bytes is computed the way numpy does it:
// float64 quotients, round half away from zero, Math.fround for float32.

export const RESULT_CODECS = ["f32", "f16", "i8", "topk"];
export const PARAM_CODECS = ["f32", "f16", "delta-f16", "delta-i8"];
export const BLOCK = 256;
export const HALF_MAX = 65504;
export const DEFAULT_TOPK_RATIO = 0.01;

export class CodecError extends Error {}
export class BaseMismatch extends CodecError {}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

// float32 → IEEE half bits, round to nearest even (numpy's float32 → float16).
export function toHalf(value) {
  const v = value > HALF_MAX ? HALF_MAX : value < -HALF_MAX ? -HALF_MAX : value;
  f32buf[0] = v;
  const x = u32buf[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

export function fromHalf(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function topkCount(size, ratio) {
  if (!(ratio > 0 && ratio <= 1)) throw new Error(`top-k ratio must be in (0, 1], got ${ratio}`);
  return Math.max(1, Math.min(size, Math.ceil(size * ratio)));
}

function view(bytes) {
  if (!(bytes instanceof Uint8Array)) throw new CodecError("codec data must be binary (Uint8Array)");
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function expectLength(codec, bytes, want, what) {
  if (bytes.byteLength !== want) throw new CodecError(`${codec} data has ${bytes.byteLength} bytes, expected ${want} (${what})`);
}

function encodeF32(x) {
  const out = new Uint8Array(4 * x.length);
  const dv = view(out);
  for (let i = 0; i < x.length; i++) dv.setFloat32(4 * i, x[i], true);
  return out;
}

function encodeF16(x) {
  const out = new Uint8Array(2 * x.length);
  const dv = view(out);
  for (let i = 0; i < x.length; i++) dv.setUint16(2 * i, toHalf(x[i]), true);
  return out;
}

function encodeI8(x) {
  const size = x.length, blocks = Math.ceil(size / BLOCK);
  const out = new Uint8Array(4 * blocks + size);
  const dv = view(out);
  const q = new Int8Array(out.buffer, out.byteOffset + 4 * blocks, size);
  for (let b = 0; b < blocks; b++) {
    const end = Math.min(size, (b + 1) * BLOCK);
    let max = 0;
    for (let i = b * BLOCK; i < end; i++) max = Math.max(max, Math.abs(x[i]));
    const scale = Math.fround(max / 127);
    dv.setFloat32(4 * b, scale, true);
    for (let i = b * BLOCK; i < end; i++) {
      const r = scale > 0 ? x[i] / scale : 0;
      const v = Math.sign(r) * Math.floor(Math.abs(r) + 0.5);
      q[i] = v > 127 ? 127 : v < -127 ? -127 : v;
    }
  }
  return out;
}

function topkIndices(x, k) {
  const size = x.length;
  if (k >= size) return Uint32Array.from({ length: size }, (_, i) => i);
  const abs = new Float32Array(size);
  for (let i = 0; i < size; i++) abs[i] = Math.abs(x[i]);
  const sorted = abs.slice().sort();
  const threshold = sorted[size - k];
  let above = 0;
  for (let i = 0; i < size; i++) if (abs[i] > threshold) above++;
  let equalLeft = k - above;
  const idx = new Uint32Array(k);
  let n = 0;
  for (let i = 0; i < size && n < k; i++) {
    if (abs[i] > threshold) idx[n++] = i;
    else if (abs[i] === threshold && equalLeft > 0) { idx[n++] = i; equalLeft--; }
  }
  return idx;
}

function encodeTopk(x, k) {
  if (!(k >= 0 && k <= x.length)) throw new Error(`k must be in [0, ${x.length}], got ${k}`);
  const idx = k ? topkIndices(x, k) : new Uint32Array(0);
  const out = new Uint8Array(4 + 8 * idx.length);
  const dv = view(out);
  dv.setUint32(0, idx.length, true);
  for (let j = 0; j < idx.length; j++) {
    dv.setUint32(4 + 4 * j, idx[j], true);
    dv.setFloat32(4 + 4 * idx.length + 4 * j, x[idx[j]], true);
  }
  return out;
}

export function encodeVector(codec, x, { k } = {}) {
  if (codec === "f32") return encodeF32(x);
  if (codec === "f16") return encodeF16(x);
  if (codec === "i8") return encodeI8(x);
  if (codec === "topk") {
    if (k === undefined) throw new Error("topk needs k");
    return encodeTopk(x, k);
  }
  throw new Error(`unknown codec ${codec} (known: ${RESULT_CODECS.join(", ")})`);
}

export function decodeVector(codec, bytes, size) {
  const dv = view(bytes);
  const out = new Float32Array(size);
  if (codec === "f32") {
    expectLength(codec, bytes, 4 * size, `${size} float32`);
    for (let i = 0; i < size; i++) out[i] = dv.getFloat32(4 * i, true);
  } else if (codec === "f16") {
    expectLength(codec, bytes, 2 * size, `${size} float16`);
    for (let i = 0; i < size; i++) out[i] = fromHalf(dv.getUint16(2 * i, true));
  } else if (codec === "i8") {
    const blocks = Math.ceil(size / BLOCK);
    expectLength(codec, bytes, 4 * blocks + size, `${blocks} float32 scales + ${size} int8`);
    for (let b = 0; b < blocks; b++) {
      const scale = dv.getFloat32(4 * b, true);
      if (!Number.isFinite(scale) || scale < 0) throw new CodecError(`i8 block scale ${b} is ${scale}; scales must be finite and >= 0`);
      const end = Math.min(size, (b + 1) * BLOCK);
      for (let i = b * BLOCK; i < end; i++) {
        const q = dv.getInt8(4 * blocks + i);
        if (q === -128) throw new CodecError(`i8 value at index ${i} is -128; values must be in [-127, 127]`);
        out[i] = q * scale;
      }
    }
  } else if (codec === "topk") {
    if (bytes.byteLength < 4) throw new CodecError(`topk data has ${bytes.byteLength} bytes, too short for its uint32 count`);
    const k = dv.getUint32(0, true);
    if (k > size) throw new CodecError(`topk count ${k} exceeds the ${size} parameters`);
    expectLength(codec, bytes, 4 + 8 * k, `count + ${k} uint32 indices + ${k} float32 values`);
    let last = -1;
    for (let j = 0; j < k; j++) {
      const i = dv.getUint32(4 + 4 * j, true);
      if (i >= size) throw new CodecError(`topk index ${i} is out of range (parameters: ${size})`);
      if (i <= last) throw new CodecError(`topk indices must be strictly increasing; index ${j} (${i}) is not`);
      out[i] = dv.getFloat32(4 + 4 * k + 4 * j, true);
      last = i;
    }
  } else {
    throw new CodecError(`unknown codec ${codec} (known: ${RESULT_CODECS.join(", ")})`);
  }
  for (let i = 0; i < size; i++) {
    if (!Number.isFinite(out[i])) throw new CodecError(`${codec} data decodes to a non-finite value at index ${i}`);
  }
  return out;
}

// A client's result encoder: adds the residual of earlier results, encodes,
// keeps what this one loses (float32, like the master's decode).
export class ErrorFeedback {
  constructor(codec, size, topkRatio = DEFAULT_TOPK_RATIO) {
    if (!RESULT_CODECS.includes(codec)) throw new Error(`unknown result codec ${codec}`);
    this.codec = codec;
    this.size = size;
    this.topkRatio = topkRatio;
    this.residual = null;
  }

  encode(gradSum) {
    if (gradSum.length !== this.size) throw new Error(`result must have ${this.size} values, got ${gradSum.length}`);
    if (this.codec === "f32") return encodeF32(gradSum);
    const wanted = new Float32Array(this.size);
    if (this.residual) for (let i = 0; i < this.size; i++) wanted[i] = gradSum[i] + this.residual[i];
    else wanted.set(gradSum);
    const k = this.codec === "topk" ? topkCount(this.size, this.topkRatio) : undefined;
    const data = encodeVector(this.codec, wanted, { k });
    const sent = decodeVector(this.codec, data, this.size);
    for (let i = 0; i < this.size; i++) wanted[i] -= sent[i];
    this.residual = wanted;
    return data;
  }

  reset() { this.residual = null; }
}

// A client's parameters: full frames replace them, delta frames add to them
// when their base is the iteration held (otherwise BaseMismatch: skip the work).
export class ParamsReceiver {
  constructor(size) {
    this.size = size;
    this.iteration = null;
    this.params = null;
  }

  apply(iteration, codec, bytes, base = null) {
    let values;
    if (codec === "f32" || codec === "f16") {
      values = decodeVector(codec, bytes, this.size);
    } else if (codec === "delta-f16" || codec === "delta-i8") {
      if (this.params === null || base === null || base === undefined || base !== this.iteration) {
        const held = this.iteration;
        this.params = this.iteration = null;
        throw new BaseMismatch(`${codec} frame for iteration ${iteration} is against iteration ${base}, this client holds ${held}`);
      }
      const delta = decodeVector(codec.slice(6), bytes, this.size);
      values = new Float32Array(this.size);
      for (let i = 0; i < this.size; i++) values[i] = this.params[i] + delta[i];
    } else {
      throw new CodecError(`unknown parameter codec ${codec} (known: ${PARAM_CODECS.join(", ")})`);
    }
    this.params = values;
    this.iteration = iteration;
    return values;
  }
}
