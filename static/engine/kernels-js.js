// Plain-JS kernels on one heap. Pointers are byte offsets, as in the wasm
// kernels (kernels.c) that replace the hot ones when SIMD is available.

export function jsKernels(buffer) {
  const f = new Float32Array(buffer);
  const ix = new Int32Array(buffer);

  // c[m×n] = a[m×k]·b[k×n] (+ bias row)
  function gemmNN(m, n, k, a, lda, b, ldb, c, ldc, bias) {
    a >>= 2; b >>= 2; c >>= 2; bias >>= 2;
    for (let i = 0; i < m; i++) {
      const ci = c + i * ldc, ai = a + i * lda;
      if (bias) for (let j = 0; j < n; j++) f[ci + j] = f[bias + j];
      else f.fill(0, ci, ci + n);
      for (let kk = 0; kk < k; kk++) {
        const v = f[ai + kk];
        if (v === 0) continue;
        const bk = b + kk * ldb;
        for (let j = 0; j < n; j++) f[ci + j] += v * f[bk + j];
      }
    }
  }

  // c[p×q] += a[m×p]ᵀ·b[m×q]
  function gemmTN(m, p, q, a, lda, b, ldb, c, ldc) {
    a >>= 2; b >>= 2; c >>= 2;
    for (let r = 0; r < m; r++) {
      const ar = a + r * lda, br = b + r * ldb;
      for (let i = 0; i < p; i++) {
        const v = f[ar + i];
        if (v === 0) continue;
        const ci = c + i * ldc;
        for (let j = 0; j < q; j++) f[ci + j] += v * f[br + j];
      }
    }
  }

  // out[j] += Σ_i a[i×n + j]
  function colSums(a, m, n, out) {
    a >>= 2; out >>= 2;
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) f[out + j] += f[a + i * n + j];
  }

  function transpose(a, rows, cols, out) {
    a >>= 2; out >>= 2;
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) f[out + j * rows + i] = f[a + i * cols + j];
  }

  // cols[(e,oy,ox) × (fy,fx,ch)], zeros where the window leaves the input
  function im2col(x, n, h, w, c, sy, sx, stride, pad, oh, ow, cols) {
    x >>= 2; cols >>= 2;
    let o = cols;
    for (let e = 0; e < n; e++) {
      const xe = x + e * h * w * c;
      for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
        for (let fy = 0; fy < sy; fy++) {
          const iy = oy * stride - pad + fy;
          for (let fx = 0; fx < sx; fx++, o += c) {
            const ixx = ox * stride - pad + fx;
            if (iy < 0 || iy >= h || ixx < 0 || ixx >= w) f.fill(0, o, o + c);
            else f.copyWithin(o, xe + (iy * w + ixx) * c, xe + (iy * w + ixx) * c + c);
          }
        }
      }
    }
  }

  // dx = adjoint of im2col applied to dcols
  function col2im(cols, n, h, w, c, sy, sx, stride, pad, oh, ow, dx) {
    cols >>= 2; dx >>= 2;
    f.fill(0, dx, dx + n * h * w * c);
    let o = cols;
    for (let e = 0; e < n; e++) {
      const xe = dx + e * h * w * c;
      for (let oy = 0; oy < oh; oy++) for (let ox = 0; ox < ow; ox++) {
        for (let fy = 0; fy < sy; fy++) {
          const iy = oy * stride - pad + fy;
          for (let fx = 0; fx < sx; fx++, o += c) {
            const ixx = ox * stride - pad + fx;
            if (iy < 0 || iy >= h || ixx < 0 || ixx >= w) continue;
            const xi = xe + (iy * w + ixx) * c;
            for (let ch = 0; ch < c; ch++) f[xi + ch] += f[o + ch];
          }
        }
      }
    }
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

  return { f, ix, gemmNN, gemmTN, colSums, transpose, im2col, col2im, poolForward, poolBackward, reluForward, reluBackward };
}

// Elementwise and per-row kernels that stay in JS in both backends (they need Math).
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
