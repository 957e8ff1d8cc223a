// A small msgpack codec for the worker protocol: maps, arrays, strings, numbers,
// booleans, nil and bin. Typed arrays encode as bin (their bytes); bin decodes
// to a Uint8Array. Integers encode as msgpack integers, other numbers as float64.

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

export function encode(value) {
  const writer = new Writer();
  writer.write(value);
  return writer.bytes();
}

export function decode(input) {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  const reader = new Reader(bytes);
  const value = reader.read();
  if (reader.pos !== bytes.length) throw new Error(`msgpack: ${bytes.length - reader.pos} bytes left after the value`);
  return value;
}

// A Float32Array over little-endian float32 bytes (copies when the bytes are not 4-aligned).
export function float32(bin) {
  if (bin.byteLength % 4) throw new Error(`float32 bin has ${bin.byteLength} bytes, not a multiple of 4`);
  if (bin.byteOffset % 4 === 0) return new Float32Array(bin.buffer, bin.byteOffset, bin.byteLength / 4);
  return new Float32Array(bin.slice().buffer);
}

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  bytes() {
    return this.buf.subarray(0, this.pos);
  }

  reserve(n) {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  byte(b) {
    this.reserve(1);
    this.buf[this.pos++] = b;
  }

  head(b, size, n) {
    this.reserve(1 + size);
    this.buf[this.pos++] = b;
    if (size === 1) this.view.setUint8(this.pos, n);
    else if (size === 2) this.view.setUint16(this.pos, n);
    else if (size === 4) this.view.setUint32(this.pos, n);
    this.pos += size;
  }

  raw(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  write(value) {
    if (value === null || value === undefined) this.byte(0xc0);
    else if (value === false) this.byte(0xc2);
    else if (value === true) this.byte(0xc3);
    else if (typeof value === "number") this.number(value);
    else if (typeof value === "bigint") this.bigint(value);
    else if (typeof value === "string") this.string(value);
    else if (value instanceof ArrayBuffer) this.bin(new Uint8Array(value));
    else if (ArrayBuffer.isView(value)) this.bin(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    else if (Array.isArray(value)) this.array(value);
    else if (value instanceof Map) this.map([...value.entries()]);
    else if (typeof value === "object") this.map(Object.entries(value).filter(([, v]) => v !== undefined));
    else throw new TypeError(`msgpack: cannot encode ${typeof value}`);
  }

  number(n) {
    if (!Number.isInteger(n) || !Number.isSafeInteger(n)) {
      this.reserve(9);
      this.buf[this.pos++] = 0xcb;
      this.view.setFloat64(this.pos, n);
      this.pos += 8;
    } else if (n >= 0) {
      if (n < 0x80) this.byte(n);
      else if (n < 0x100) this.head(0xcc, 1, n);
      else if (n < 0x10000) this.head(0xcd, 2, n);
      else if (n < 0x100000000) this.head(0xce, 4, n);
      else this.bigint(BigInt(n));
    } else if (n >= -32) this.byte(n & 0xff);
    else if (n >= -0x80) {
      this.reserve(2);
      this.buf[this.pos++] = 0xd0;
      this.view.setInt8(this.pos++, n);
    } else if (n >= -0x8000) {
      this.reserve(3);
      this.buf[this.pos++] = 0xd1;
      this.view.setInt16(this.pos, n);
      this.pos += 2;
    } else if (n >= -0x80000000) {
      this.reserve(5);
      this.buf[this.pos++] = 0xd2;
      this.view.setInt32(this.pos, n);
      this.pos += 4;
    } else this.bigint(BigInt(n));
  }

  bigint(n) {
    this.reserve(9);
    if (n >= 0n) {
      this.buf[this.pos++] = 0xcf;
      this.view.setBigUint64(this.pos, n);
    } else {
      this.buf[this.pos++] = 0xd3;
      this.view.setBigInt64(this.pos, n);
    }
    this.pos += 8;
  }

  string(s) {
    const bytes = utf8Encoder.encode(s);
    const n = bytes.length;
    if (n < 32) this.byte(0xa0 | n);
    else if (n < 0x100) this.head(0xd9, 1, n);
    else if (n < 0x10000) this.head(0xda, 2, n);
    else this.head(0xdb, 4, n);
    this.raw(bytes);
  }

  bin(bytes) {
    const n = bytes.length;
    if (n < 0x100) this.head(0xc4, 1, n);
    else if (n < 0x10000) this.head(0xc5, 2, n);
    else this.head(0xc6, 4, n);
    this.raw(bytes);
  }

  array(items) {
    const n = items.length;
    if (n < 16) this.byte(0x90 | n);
    else if (n < 0x10000) this.head(0xdc, 2, n);
    else this.head(0xdd, 4, n);
    for (const item of items) this.write(item);
  }

  map(entries) {
    const n = entries.length;
    if (n < 16) this.byte(0x80 | n);
    else if (n < 0x10000) this.head(0xde, 2, n);
    else this.head(0xdf, 4, n);
    for (const [key, value] of entries) {
      this.write(key);
      this.write(value);
    }
  }
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) throw new Error("msgpack: unexpected end of data");
  }

  u8() {
    this.need(1);
    return this.bytes[this.pos++];
  }

  fixed(getter, size) {
    this.need(size);
    const value = this.view[getter](this.pos);
    this.pos += size;
    return value;
  }

  take(n) {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  str(n) {
    return utf8Decoder.decode(this.take(n));
  }

  arr(n) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.read();
    return out;
  }

  obj(n) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = this.read();
      out[String(key)] = this.read();
    }
    return out;
  }

  int64(getter) {
    const big = this.fixed(getter, 8);
    const small = Number(big);
    return Number.isSafeInteger(small) ? small : big;
  }

  read() {
    const b = this.u8();
    if (b < 0x80) return b;
    if (b < 0x90) return this.obj(b & 0x0f);
    if (b < 0xa0) return this.arr(b & 0x0f);
    if (b < 0xc0) return this.str(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.take(this.u8());
      case 0xc5: return this.take(this.fixed("getUint16", 2));
      case 0xc6: return this.take(this.fixed("getUint32", 4));
      case 0xca: return this.fixed("getFloat32", 4);
      case 0xcb: return this.fixed("getFloat64", 8);
      case 0xcc: return this.u8();
      case 0xcd: return this.fixed("getUint16", 2);
      case 0xce: return this.fixed("getUint32", 4);
      case 0xcf: return this.int64("getBigUint64");
      case 0xd0: return this.fixed("getInt8", 1);
      case 0xd1: return this.fixed("getInt16", 2);
      case 0xd2: return this.fixed("getInt32", 4);
      case 0xd3: return this.int64("getBigInt64");
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.fixed("getUint16", 2));
      case 0xdb: return this.str(this.fixed("getUint32", 4));
      case 0xdc: return this.arr(this.fixed("getUint16", 2));
      case 0xdd: return this.arr(this.fixed("getUint32", 4));
      case 0xde: return this.obj(this.fixed("getUint16", 2));
      case 0xdf: return this.obj(this.fixed("getUint32", 4));
      default: throw new Error(`msgpack: unsupported type byte 0x${b.toString(16)}`);
    }
  }
}
