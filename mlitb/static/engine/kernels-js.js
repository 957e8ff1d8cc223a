// Plain-JS kernels on one heap, with the signatures of the wasm kernels
// (kernels.c) that replace them when SIMD is available. Pointers are byte
// offsets. Convolution is an implicit GEMM over a padded input: row m of the
// virtual im2col matrix starts at rows[m]; fc is the case sy = 1, run = K.
// Packed weights are private to a backend: here they are the plain F×K rows.

export function jsKernels(buffer) {
  const f = new Float32Array(buffer);
  const ix = new Int32Array(buffer);

  function convRows(n, hp, wp, c, stride, oh, ow, rows) {
    rows >>= 2;
    for (let e = 0; e < n; e++) for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
      ix[rows++] = ((e * hp + oy * stride) * wp + ox * stride) * c;
    }
  }

  function packWeights(w, F, K, packed) {
    f.copyWithin(packed >> 2, w >> 2, (w >> 2) + F * K);
  }

  function unpackAddWeights(packed, F, K, w) {
    packed >>= 2; w >>= 2;
    for (let i = 0; i < F * K; i++) f[w + i] += f[packed + i];
  }

  // y[m×F] = bias + Σ_kk A(m, kk)·w[f, kk], A(m, fy*run + j) = xp[rows[m] + fy*rowStride + j]
  function convForward(xp, rows, m, sy, run, rowStride, w, F, bias, y) {
    xp >>= 2; rows >>= 2; w >>= 2; bias >>= 2; y >>= 2;
    const K = sy * run;
    for (let i = 0; i < m; i++) {
      const base = xp + ix[rows + i];
      for (let o = 0; o < F; o++) {
        let s = f[bias + o];
        for (let fy = 0; fy < sy; fy++) {
          const a = base + fy * rowStride, b = w + o * K + fy * run;
          for (let j = 0; j < run; j++) s += f[a + j] * f[b + j];
        }
        f[y + i * F + o] = s;
      }
    }
  }

  // g[f, kk] += Σ_m A(m, kk)·dy[m, f]
  function convWeightGrad(xp, rows, m, sy, run, rowStride, dy, F, g) {
    xp >>= 2; rows >>= 2; dy >>= 2; g >>= 2;
    const K = sy * run;
    for (let i = 0; i < m; i++) {
      const base = xp + ix[rows + i];
      for (let o = 0; o < F; o++) {
        const d = f[dy + i * F + o];
        if (d === 0) continue;
        for (let fy = 0; fy < sy; fy++) {
          const a = base + fy * rowStride, go = g + o * K + fy * run;
          for (let j = 0; j < run; j++) f[go + j] += d * f[a + j];
        }
      }
    }
  }

  // dxp[rows[m] + fy*rowStride + j] += Σ_f dy[m, f]·w[f, fy*run + j]
  function convInputGrad(dy, F, w, rows, m, sy, run, rowStride, dxp) {
    dy >>= 2; w >>= 2; rows >>= 2; dxp >>= 2;
    const K = sy * run;
    for (let i = 0; i < m; i++) {
      const base = dxp + ix[rows + i];
      for (let o = 0; o < F; o++) {
        const d = f[dy + i * F + o];
        if (d === 0) continue;
        for (let fy = 0; fy < sy; fy++) {
          const x = base + fy * rowStride, wo = w + o * K + fy * run;
          for (let j = 0; j < run; j++) f[x + j] += d * f[wo + j];
        }
      }
    }
  }

  function padCopy(x, n, h, w, c, pad, xp) {
    x >>= 2; xp >>= 2;
    const hp = h + 2 * pad, wp = w + 2 * pad, row = w * c;
    f.fill(0, xp, xp + n * hp * wp * c);
    for (let e = 0; e < n; e++) for (let y = 0; y < h; y++) {
      const from = x + (e * h + y) * row;
      f.copyWithin(xp + ((e * hp + y + pad) * wp + pad) * c, from, from + row);
    }
  }

  function cropCopy(xp, n, h, w, c, pad, x) {
    xp >>= 2; x >>= 2;
    const hp = h + 2 * pad, wp = w + 2 * pad, row = w * c;
    for (let e = 0; e < n; e++) for (let y = 0; y < h; y++) {
      const from = xp + ((e * hp + y + pad) * wp + pad) * c;
      f.copyWithin(x + (e * h + y) * row, from, from + row);
    }
  }

  // out[j] += Σ_i a[i×n + j]
  function colSums(a, m, n, out) {
    a >>= 2; out >>= 2;
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) f[out + j] += f[a + i * n + j];
  }

  // max over in-bounds window cells, first maximum in (fy, fx) order; arg = input element index
  function poolForward(x, n, h, w, c, sy, sx, stride, pad, oh, ow, y, arg) {
    x >>= 2; y >>= 2; arg >>= 2;
    let o = 0;
    for (let e = 0; e < n; e++) {
      const xe = e * h * w * c;
      for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) for (let ch = 0; ch < c; ch++, o++) {
        let best = -Infinity, at = -1;
        for (let fy = 0; fy < sy; fy++) {
          const iy = oy * stride - pad + fy;
          if (iy < 0 || iy >= h) continue;
          for (let fx = 0; fx < sx; fx++) {
            const ixx = ox * stride - pad + fx;
            if (ixx < 0 || ixx >= w) continue;
            const idx = xe + (iy * w + ixx) * c + ch;
            const v = f[x + idx];
            if (v > best || at < 0) { best = v; at = idx; }
          }
        }
        f[y + o] = best;
        ix[arg + o] = at;
      }
    }
  }

  function poolBackward(dy, arg, count, dx, inCount) {
    dy >>= 2; arg >>= 2; dx >>= 2;
    f.fill(0, dx, dx + inCount);
    for (let o = 0; o < count; o++) f[dx + ix[arg + o]] += f[dy + o];
  }

  function reluForward(x, y, count) {
    x >>= 2; y >>= 2;
    for (let i = 0; i < count; i++) { const v = f[x + i]; f[y + i] = v > 0 ? v : 0; }
  }

  function reluBackward(y, dy, dx, count) {
    y >>= 2; dy >>= 2; dx >>= 2;
    for (let i = 0; i < count; i++) f[dx + i] = f[y + i] > 0 ? f[dy + i] : 0;
  }

  return {
    f, ix, convRows, packWeights, unpackAddWeights, convForward, convWeightGrad, convInputGrad,
    padCopy, cropCopy, colSums, poolForward, poolBackward, reluForward, reluBackward,
  };
}

// Elementwise kernels that stay in JS in both backends (they need Math).
export function jsMathKernels(f) {
  return {
    tanhForward(x, y, count) {
      x >>= 2; y >>= 2;
      for (let i = 0; i < count; i++) f[y + i] = Math.tanh(f[x + i]);
    },
    tanhBackward(y, dy, dx, count) {
      y >>= 2; dy >>= 2; dx >>= 2;
      for (let i = 0; i < count; i++) { const v = f[y + i]; f[dx + i] = f[dy + i] * (1 - v * v); }
    },
    sigmoidForward(x, y, count) {
      x >>= 2; y >>= 2;
      for (let i = 0; i < count; i++) f[y + i] = 1 / (1 + Math.exp(-f[x + i]));
    },
    sigmoidBackward(y, dy, dx, count) {
      y >>= 2; dy >>= 2; dx >>= 2;
      for (let i = 0; i < count; i++) { const v = f[y + i]; f[dx + i] = f[dy + i] * v * (1 - v); }
    },
    multiply(a, b, out, count) {
      a >>= 2; b >>= 2; out >>= 2;
      for (let i = 0; i < count; i++) f[out + i] = f[a + i] * f[b + i];
    },
  };
}
