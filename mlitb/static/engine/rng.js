// mulberry32, the dropout stream both engines share. Its state only adds
// STEP per draw, so the stream can start at any draw index.

const STEP = 0x6d2b79f5;

export function mulberry32(seed, start = 0) {
  let a = (seed + Math.imul(start, STEP)) | 0;
  return () => {
    a = (a + STEP) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(seed) {
  const uniform = mulberry32(seed);
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}
