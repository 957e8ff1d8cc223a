// WGSL sources of the WebGPU engine, one compute shader per layer and pass,
// with every shape baked in as a constant (only the chunk size `u.n` varies).
// Pure string builders: no GPU here, so they can be read and tested alone.
// Layouts match the WASM engine: activations (example, y, x, depth), conv
// weights (out, y, x, in), fc weights (out, in). conv and fc are one implicit
// GEMM; fc is a 1×1 window over a 1×1 input of depth num_inputs.

export const THREADS = 256;
const STEP = 0x6d2b79f5;

// A float literal WGSL reads back to the same f32.
export const f32lit = (v) => {
  const s = String(Math.fround(v));
  return /[.eE]/.test(s) ? s : `${s}.0`;
};

const UNIFORMS = "struct U { n: u32, start: u32, total: u32, seed: u32 }\n";

// Binding declarations: [name, "read" | "rw" | "uniform", "f32" | "u32"]
function bindings(list) {
  return UNIFORMS + list.map(([name, access, type = "f32"], i) => access === "uniform"
    ? `@group(0) @binding(${i}) var<uniform> ${name}: U;`
    : `@group(0) @binding(${i}) var<storage, ${access === "rw" ? "read_write" : "read"}> ${name}: array<${type}>;`).join("\n") + "\n";
}

// Index of the invocation in a 1-D problem dispatched as (x, y) workgroups of THREADS.
const FLAT = `@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * nwg.x + wg.x) * ${THREADS}u + lid;`;

// Tile width for an output of N columns: 16, 32 or 64.
export const tileWidth = (N) => (N <= 16 ? 16 : N <= 32 ? 32 : 64);

/**
 * C[M×N] = Σ_k A(m,k)·B(k,n) in 64×TN tiles, 4×4 outputs per invocation,
 * reduction [z·slice, min(kred, (z+1)·slice)) for workgroup z (split-K).
 * loadA/loadB see only in-range indices; store gets (m, c, value, z).
 */
export function gemm({ decls, M, N, kred, slice = "kred", loadA, loadB, store, helpers = "" }) {
  const TN = tileWidth(N), WX = TN / 4;
  return `${decls}${helpers}
const TM = 64u; const TN = ${TN}u; const TK = 16u; const WX = ${WX}u; const THREADS = ${WX * 16}u;
var<workgroup> As: array<f32, ${64 * 16}>;
var<workgroup> Bs: array<f32, ${16 * TN}>;
fn loadA(m: u32, k: u32) -> f32 { ${loadA} }
fn loadB(k: u32, c: u32) -> f32 { ${loadB} }
fn store(m: u32, c: u32, v: f32, z: u32) { ${store} }
@compute @workgroup_size(${WX}, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(local_invocation_index) tid: u32) {
  let M = ${M}; let N = ${N}u; let kred = ${kred}; let slice = ${slice};
  let m0 = wg.y * TM; let c0 = wg.x * TN;
  let kBegin = wg.z * slice; let kEnd = min(kred, kBegin + slice);
  var acc: array<vec4f, 4>;
  for (var k0 = kBegin; k0 < kEnd; k0 += TK) {
    for (var i = tid; i < TM * TK; i += THREADS) {
      let mm = i / TK; let kk = i % TK; let m = m0 + mm; let k = k0 + kk;
      var v = 0.0;
      if (m < M && k < kEnd) { v = loadA(m, k); }
      As[kk * TM + mm] = v;
    }
    for (var i = tid; i < TK * TN; i += THREADS) {
      let kk = i / TN; let cc = i % TN; let c = c0 + cc; let k = k0 + kk;
      var v = 0.0;
      if (c < N && k < kEnd) { v = loadB(k, c); }
      Bs[i] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let ar = kk * TM + l.y * 4u;
      let a = vec4f(As[ar], As[ar + 1u], As[ar + 2u], As[ar + 3u]);
      let br = kk * TN + l.x * 4u;
      let b = vec4f(Bs[br], Bs[br + 1u], Bs[br + 2u], Bs[br + 3u]);
      acc[0] = fma(vec4f(a.x), b, acc[0]);
      acc[1] = fma(vec4f(a.y), b, acc[1]);
      acc[2] = fma(vec4f(a.z), b, acc[2]);
      acc[3] = fma(vec4f(a.w), b, acc[3]);
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + l.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let c = c0 + l.x * 4u + j;
      if (m < M && c < N) { store(m, c, acc[i][j], wg.z); }
    }
  }
}`;
}

// The shape constants of one conv/fc layer as the GEMMs see it.
export function convShape(layer) {
  if (layer.type === "fc") return { H: 1, W: 1, C: layer.inSize, SY: 1, SX: 1, S: 1, PAD: 0, OH: 1, OW: 1, F: layer.outShape[2] };
  const [H, W, C] = layer.inShape, [OH, OW, F] = layer.outShape;
  return { H, W, C, SY: layer.sy, SX: layer.sx, S: layer.stride, PAD: layer.pad, OH, OW, F };
}

// x value of the virtual im2col matrix: row m = (e, oy, ox), column k = (fy, fx, c)
function im2col(g) {
  return `fn im2col(m: u32, k: u32) -> f32 {
  let e = m / ${g.OH * g.OW}u; let r = m % ${g.OH * g.OW}u;
  let oy = r / ${g.OW}u; let ox = r % ${g.OW}u;
  let fy = k / ${g.SX * g.C}u; let t = k % ${g.SX * g.C}u; let fx = t / ${g.C}u; let c = t % ${g.C}u;
  let iy = i32(oy * ${g.S}u + fy) - ${g.PAD}; let ix = i32(ox * ${g.S}u + fx) - ${g.PAD};
  if (iy < 0 || ix < 0 || iy >= ${g.H} || ix >= ${g.W}) { return 0.0; }
  return x[((e * ${g.H}u + u32(iy)) * ${g.W}u + u32(ix)) * ${g.C}u + c];
}
`;
}

// y = bias + im2col(x)·Wᵀ ; w and b are offsets into the parameter vector
export function convForward(g, wOff, bOff) {
  const K = g.SY * g.SX * g.C;
  return gemm({
    decls: bindings([["u", "uniform"], ["x", "read"], ["p", "read"], ["y", "rw"]]),
    helpers: im2col(g),
    M: `u.n * ${g.OH * g.OW}u`, N: g.F, kred: `${K}u`,
    loadA: "return im2col(m, k);",
    loadB: `return p[${wOff}u + c * ${K}u + k];`,
    store: `y[m * ${g.F}u + c] = v + p[${bOff}u + c];`,
  });
}

// Weight and bias gradient as one GEMM over the chunk's output positions:
// row k < K is dW[f, k], row K is db[f] (a column of ones in im2col). The
// reduction is split in slices of `slice` rows (workgroup z), each writing its
// partial sums to part; gradScatter adds the slices into the gradient vector.
export function convWeightGrad(g, slice) {
  const K = g.SY * g.SX * g.C;
  return gemm({
    decls: bindings([["u", "uniform"], ["x", "read"], ["dy", "read"], ["part", "rw"]]),
    helpers: im2col(g),
    M: `${K + 1}u`, N: g.F, kred: `u.n * ${g.OH * g.OW}u`, slice: `${slice}u`,
    loadA: `if (m == ${K}u) { return 1.0; } return im2col(k, m);`,
    loadB: `return dy[k * ${g.F}u + c];`,
    store: `part[(z * ${K + 1}u + m) * ${g.F}u + c] = v;`,
  });
}

// The slices of the (K+1)×F weight-gradient matrix summed and added into the
// gradient vector in layout order: weights (f, k) then biases.
export function gradScatter(g, wOff, bOff, slice) {
  const K = g.SY * g.SX * g.C, size = (K + 1) * g.F;
  return `${bindings([["u", "uniform"], ["part", "read"], ["grads", "rw"]])}${FLAT}
  if (i >= ${size}u) { return; }
  let slices = (u.n * ${g.OH * g.OW}u + ${slice - 1}u) / ${slice}u;
  var v = 0.0;
  for (var s = 0u; s < slices; s++) { v += part[s * ${size}u + i]; }
  let k = i / ${g.F}u; let f = i % ${g.F}u;
  if (k < ${K}u) { grads[${wOff}u + f * ${K}u + k] += v; } else { grads[${bOff}u + f] += v; }
}`;
}

// dx = col2im(dy·W) as a gather GEMM: row = input position (e, iy, ix), column = channel,
// reduction over (fy, fx, f) of the outputs whose window covers the position.
export function convInputGrad(g, wOff) {
  const { H, W, C, SY, SX, S, PAD, OH, OW, F } = g;
  return gemm({
    decls: bindings([["u", "uniform"], ["dy", "read"], ["p", "read"], ["dx", "rw"]]),
    M: `u.n * ${H * W}u`, N: C, kred: `${SY * SX * F}u`,
    loadA: `let e = m / ${H * W}u; let r = m % ${H * W}u;
  let fy = k / ${SX * F}u; let t = k % ${SX * F}u; let fx = t / ${F}u; let f = t % ${F}u;
  let ty = i32(r / ${W}u) + ${PAD} - i32(fy); let tx = i32(r % ${W}u) + ${PAD} - i32(fx);
  if (ty < 0 || tx < 0 || ty % ${S} != 0 || tx % ${S} != 0) { return 0.0; }
  let oy = u32(ty) / ${S}u; let ox = u32(tx) / ${S}u;
  if (oy >= ${OH}u || ox >= ${OW}u) { return 0.0; }
  return dy[((e * ${OH}u + oy) * ${OW}u + ox) * ${F}u + f];`,
    loadB: `let fy = k / ${SX * F}u; let t = k % ${SX * F}u; let fx = t / ${F}u; let f = t % ${F}u;
  return p[${wOff}u + ((f * ${SY}u + fy) * ${SX}u + fx) * ${C}u + c];`,
    store: `dx[m * ${C}u + c] = v;`,
  });
}

// max over in-bounds window cells, first maximum in (fy, fx) order; arg = input index in the chunk
export function poolForward(layer) {
  const [H, W, C] = layer.inShape, [OH, OW] = layer.outShape, { sx, sy, stride, pad } = layer;
  return `${bindings([["u", "uniform"], ["x", "read"], ["y", "rw"], ["arg", "rw", "u32"]])}${FLAT}
  if (i >= u.n * ${OH * OW * C}u) { return; }
  let c = i % ${C}u; let r = i / ${C}u; let ox = r % ${OW}u; let r2 = r / ${OW}u; let oy = r2 % ${OH}u; let e = r2 / ${OH}u;
  var best = 0.0; var at = 0xffffffffu;
  for (var fy = 0; fy < ${sy}; fy++) {
    let iy = i32(oy) * ${stride} - ${pad} + fy;
    if (iy < 0 || iy >= ${H}) { continue; }
    for (var fx = 0; fx < ${sx}; fx++) {
      let ix = i32(ox) * ${stride} - ${pad} + fx;
      if (ix < 0 || ix >= ${W}) { continue; }
      let idx = ((e * ${H}u + u32(iy)) * ${W}u + u32(ix)) * ${C}u + c;
      let v = x[idx];
      if (at == 0xffffffffu || v > best) { best = v; at = idx; }
    }
  }
  y[i] = best;
  arg[i] = at;
}`;
}

// dx[idx] = Σ dy over the windows whose maximum was idx (a gather: no write races)
export function poolBackward(layer) {
  const [H, W, C] = layer.inShape, [OH, OW] = layer.outShape, { sx, sy, stride, pad } = layer;
  return `${bindings([["u", "uniform"], ["dy", "read"], ["arg", "read", "u32"], ["dx", "rw"]])}${FLAT}
  if (i >= u.n * ${H * W * C}u) { return; }
  let c = i % ${C}u; let r = i / ${C}u; let ix = i32(r % ${W}u); let r2 = r / ${W}u; let iy = i32(r2 % ${H}u); let e = r2 / ${H}u;
  let oy0 = max(0, (iy + ${pad} - ${sy} + ${stride}) / ${stride}); let oy1 = min(${OH - 1}, (iy + ${pad}) / ${stride});
  let ox0 = max(0, (ix + ${pad} - ${sx} + ${stride}) / ${stride}); let ox1 = min(${OW - 1}, (ix + ${pad}) / ${stride});
  var s = 0.0;
  for (var oy = oy0; oy <= oy1; oy++) {
    for (var ox = ox0; ox <= ox1; ox++) {
      let o = ((e * ${OH}u + u32(oy)) * ${OW}u + u32(ox)) * ${C}u + c;
      if (arg[o] == i) { s += dy[o]; }
    }
  }
  dx[i] = s;
}`;
}

const ACTIVATION = {
  relu: { forward: "max(v, 0.0)", backward: "select(0.0, d, v > 0.0)" },
  // tanh through exp(-2|v|), finite for every input on every driver
  tanh: { forward: "sign(v) * (1.0 - exp(-2.0 * abs(v))) / (1.0 + exp(-2.0 * abs(v)))", backward: "d * (1.0 - v * v)" },
  sigmoid: { forward: "1.0 / (1.0 + exp(-v))", backward: "d * v * (1.0 - v)" },
};

export function activationForward(type, size) {
  return `${bindings([["u", "uniform"], ["x", "read"], ["y", "rw"]])}${FLAT}
  if (i >= u.n * ${size}u) { return; }
  let v = x[i];
  y[i] = ${ACTIVATION[type].forward};
}`;
}

// from the layer's output v and its gradient d
export function activationBackward(type, size) {
  return `${bindings([["u", "uniform"], ["y", "read"], ["dy", "read"], ["dx", "rw"]])}${FLAT}
  if (i >= u.n * ${size}u) { return; }
  let v = y[i]; let d = dy[i];
  dx[i] = ${ACTIVATION[type].backward};
}`;
}

/**
 * Dropout with the WASM engine's masks: mulberry32 draw number
 * drawn + (start+e)·size + j of the call's stream, dropped when the draw
 * (as a u32 r, uniform = r / 2^32) is below p, i.e. r < ceil(p·2^32).
 */
export function dropoutForward(size, p, drawnPerExample) {
  const threshold = Math.ceil(p * 4294967296);
  const dropped = threshold > 0xffffffff ? "true" : `r < ${threshold}u`;
  return `${bindings([["u", "uniform"], ["x", "read"], ["y", "rw"], ["mask", "rw"]])}${FLAT}
  if (i >= u.n * ${size}u) { return; }
  let d = u.total * ${drawnPerExample}u + u.start * ${size}u + i;
  let a = u.seed + (d + 1u) * ${STEP}u;
  var t = (a ^ (a >> 15u)) * (1u | a);
  t = (t + (t ^ (t >> 7u)) * (61u | t)) ^ t;
  let r = t ^ (t >> 14u);
  let m = select(${f32lit(1 / (1 - p))}, 0.0, ${dropped});
  mask[i] = m;
  y[i] = x[i] * m;
}`;
}

export function copy(size) {
  return `${bindings([["u", "uniform"], ["x", "read"], ["y", "rw"]])}${FLAT}
  if (i >= u.n * ${size}u) { return; }
  y[i] = x[i];
}`;
}

export function multiply(size) {
  return `${bindings([["u", "uniform"], ["a", "read"], ["b", "read"], ["y", "rw"]])}${FLAT}
  if (i >= u.n * ${size}u) { return; }
  y[i] = a[i] * b[i];
}`;
}

// One invocation per example: probabilities, and with labels the loss, whether
// the arg max is right, and dlogits = probs − onehot; stats[2i] = loss, stats[2i+1] = correct
// for example i of the chunk.
export function softmax(classes, training) {
  const list = [["u", "uniform"], ["logits", "read"], ["probs", "rw"]];
  if (training) list.push(["labels", "read", "u32"], ["dlogits", "rw"], ["stats", "rw"]);
  return `${bindings(list)}${FLAT}
  if (i >= u.n) { return; }
  let base = i * ${classes}u;
  var mx = logits[base];
  for (var j = 1u; j < ${classes}u; j++) { mx = max(mx, logits[base + j]); }
  var total = 0.0;
  for (var j = 0u; j < ${classes}u; j++) { let q = exp(logits[base + j] - mx); probs[base + j] = q; total += q; }
  var best = 0u;
  for (var j = 0u; j < ${classes}u; j++) {
    let q = probs[base + j] / total;
    probs[base + j] = q;
    if (q > probs[base + best]) { best = j; }
  }
  ${training ? `let label = labels[i];
  for (var j = 0u; j < ${classes}u; j++) { dlogits[base + j] = probs[base + j] - select(0.0, 1.0, j == label); }
  stats[2u * i] = log(total) - (logits[base + label] - mx);
  stats[2u * i + 1u] = select(0.0, 1.0, best == label);` : ""}
}`;
}
