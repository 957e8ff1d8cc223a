// WebAssembly SIMD (f32x4) kernels of the JS engine; same signatures and
// semantics as kernels-js.js. Pointers are byte offsets into linear memory.
// Convolution is an implicit GEMM over a padded input: row m of the virtual
// im2col matrix starts at rows[m]; fc is the case sy = 1, run = num_inputs.
// Built twice: kernels.wasm (strict SIMD) and kernels-relaxed.wasm (-DRELAXED:
// fused multiply-add where the browser has relaxed SIMD). Rebuild: scripts/build-wasm.sh
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))
#define INLINE static inline __attribute__((always_inline))
#define RC 256
#define PANEL_GROUP_FLOATS 8192

typedef v128_t f4;

INLINE f4 ld(const float *p) { return wasm_v128_load(p); }
INLINE void st(float *p, f4 v) { wasm_v128_store(p, v); }
INLINE f4 splat(const float *p) { return wasm_v128_load32_splat(p); }
#ifdef RELAXED
// acc + a·b fused (f32x4.relaxed_madd: a·b + c). Debian's clang 14 knows it only by its
// prototype name and opcode (f32x4.fma, 0xfd 0xaf); scripts/relaxed_opcodes.py renumbers
// the built binary to the final opcode (0xfd 0x105), keeping the operands' order.
INLINE f4 madd(f4 acc, f4 a, f4 b) { return __builtin_wasm_fma_f32x4(a, b, acc); }
#else
INLINE f4 madd(f4 acc, f4 a, f4 b) { return wasm_f32x4_add(acc, wasm_f32x4_mul(a, b)); }
#endif
INLINE int min(int a, int b) { return a < b ? a : b; }
INLINE int max(int a, int b) { return a > b ? a : b; }

INLINE void zero(float *p, int len) {
  int i = 0;
  for (; i + 4 <= len; i += 4) st(p + i, wasm_f32x4_splat(0));
  for (; i < len; i++) p[i] = 0;
}

INLINE void copy(float *dst, const float *src, int len) {
  int i = 0;
  for (; i + 4 <= len; i += 4) st(dst + i, ld(src + i));
  for (; i < len; i++) dst[i] = src[i];
}

// rows[m] = element offset in the padded input of output position m's window
EXPORT(convRows)
void conv_rows(int n, int hp, int wp, int c, int stride, int oh, int ow, int *rows) {
  for (int e = 0; e < n; e++)
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++) *rows++ = ((e * hp + oy * stride) * wp + ox * stride) * c;
}

INLINE void transpose4(f4 *r) {
  f4 t0 = wasm_i32x4_shuffle(r[0], r[1], 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r[0], r[1], 2, 6, 3, 7);
  f4 t2 = wasm_i32x4_shuffle(r[2], r[3], 0, 4, 1, 5), t3 = wasm_i32x4_shuffle(r[2], r[3], 2, 6, 3, 7);
  r[0] = wasm_i32x4_shuffle(t0, t2, 0, 1, 4, 5);
  r[1] = wasm_i32x4_shuffle(t0, t2, 2, 3, 6, 7);
  r[2] = wasm_i32x4_shuffle(t1, t3, 0, 1, 4, 5);
  r[3] = wasm_i32x4_shuffle(t1, t3, 2, 3, 6, 7);
}

// w[F×K] -> panels of 8 output columns: packed[(p*K + kk)*8 + jj] = w[8p+jj, kk], zero past F
EXPORT(packWeights)
void pack_weights(const float *w, int f, int k, float *packed) {
  for (int p = 0; p < f; p += 8) {
    int kk = 0;
    if (p + 8 <= f)
      for (; kk + 4 <= k; kk += 4, packed += 32)
        for (int half = 0; half < 2; half++) {
          f4 r[4];
          for (int q = 0; q < 4; q++) r[q] = ld(w + (p + 4 * half + q) * k + kk);
          transpose4(r);
          for (int q = 0; q < 4; q++) st(packed + q * 8 + 4 * half, r[q]);
        }
    for (; kk < k; kk++, packed += 8)
      for (int jj = 0; jj < 8; jj++) packed[jj] = p + jj < f ? w[(p + jj) * k + kk] : 0;
  }
}

// w[F×K] += unpacked panels
EXPORT(unpackAddWeights)
void unpack_add_weights(const float *packed, int f, int k, float *w) {
  for (int p = 0; p < f; p += 8) {
    int kk = 0;
    if (p + 8 <= f)
      for (; kk + 4 <= k; kk += 4, packed += 32)
        for (int half = 0; half < 2; half++) {
          f4 r[4];
          for (int q = 0; q < 4; q++) r[q] = ld(packed + q * 8 + 4 * half);
          transpose4(r);
          for (int q = 0; q < 4; q++) {
            float *row = w + (p + 4 * half + q) * k + kk;
            st(row, wasm_f32x4_add(ld(row), r[q]));
          }
        }
    for (; kk < k; kk++, packed += 8)
      for (int jj = 0; jj < 8 && p + jj < f; jj++) w[(p + jj) * k + kk] += packed[jj];
  }
}

INLINE void store_cols(float *y, f4 lo, f4 hi, int valid) {
  if (valid >= 8) { st(y, lo); st(y + 4, hi); return; }
  float tmp[8];
  st(tmp, lo);
  st(tmp + 4, hi);
  for (int j = 0; j < valid; j++) y[j] = tmp[j];
}

// R output rows × one panel of 8 columns
INLINE void forward_rows(int R, const float *xp, const int *rows, int sy, int run, int row_stride,
                         const float *panel, const float *bias, float *y, int f, int valid) {
  f4 acc[4][2];
  for (int r = 0; r < R; r++) { acc[r][0] = ld(bias); acc[r][1] = ld(bias + 4); }
  for (int fy = 0; fy < sy; fy++) {
    const float *a[4];
    for (int r = 0; r < R; r++) a[r] = xp + rows[r] + fy * row_stride;
    const float *b = panel + fy * run * 8;
    for (int j = 0; j < run; j++) {
      f4 b0 = ld(b + j * 8), b1 = ld(b + j * 8 + 4);
      for (int r = 0; r < R; r++) {
        f4 av = splat(a[r] + j);
        acc[r][0] = madd(acc[r][0], av, b0);
        acc[r][1] = madd(acc[r][1], av, b1);
      }
    }
  }
  for (int r = 0; r < R; r++) store_cols(y + r * f, acc[r][0], acc[r][1], valid);
}

// y[m×F] = bias + Σ_kk A(m, kk)·w[f, kk], A(m, fy*run + j) = xp[rows[m] + fy*row_stride + j]
EXPORT(convForward)
void conv_forward(const float *xp, const int *rows, int m, int sy, int run, int row_stride,
                  const float *packed, int f, const float *bias, float *y) {
  int k = sy * run, group = max(1, PANEL_GROUP_FLOATS / (8 * k)) * 8;
  for (int g = 0; g < f; g += group) {
    int g1 = min(f, g + group), i = 0;
    for (; i + 4 <= m; i += 4)
      for (int p = g; p < g1; p += 8)
        forward_rows(4, xp, rows + i, sy, run, row_stride, packed + p * k, bias + p, y + i * f + p, f, f - p);
    for (; i < m; i++)
      for (int p = g; p < g1; p += 8)
        forward_rows(1, xp, rows + i, sy, run, row_stride, packed + p * k, bias + p, y + i * f + p, f, f - p);
  }
}

// R kk-rows × one panel of the packed weight gradient, over the rows [r0, r1)
INLINE void weight_grad_rows(int R, const float *xp, const int *rows, int r0, int r1, const int *off,
                             const float *dy, int f, float *g) {
  f4 acc[4][2];
  for (int q = 0; q < R; q++) { acc[q][0] = ld(g + q * 8); acc[q][1] = ld(g + q * 8 + 4); }
  for (int t = r0; t < r1; t++) {
    const float *a = xp + rows[t];
    f4 d0 = ld(dy + t * f), d1 = ld(dy + t * f + 4);
    for (int q = 0; q < R; q++) {
      f4 av = splat(a + off[q]);
      acc[q][0] = madd(acc[q][0], av, d0);
      acc[q][1] = madd(acc[q][1], av, d1);
    }
  }
  for (int q = 0; q < R; q++) { st(g + q * 8, acc[q][0]); st(g + q * 8 + 4, acc[q][1]); }
}

// packed gradient (panels of 8 columns) += Σ_m A(m, kk)·dy[m, f]
EXPORT(convWeightGrad)
void conv_weight_grad(const float *xp, const int *rows, int m, int sy, int run, int row_stride,
                      const float *dy, int f, float *gpacked) {
  int k = sy * run;
  for (int r0 = 0; r0 < m; r0 += RC) {
    int r1 = min(m, r0 + RC);
    for (int kk = 0; kk < k; kk += 4) {
      int R = min(4, k - kk), off[4];
      for (int q = 0; q < R; q++) off[q] = ((kk + q) / run) * row_stride + (kk + q) % run;
      for (int p = 0; p < f; p += 8) {
        float *g = gpacked + (p * k + kk * 8);
        const float *d = dy + p;
        if (R == 4) weight_grad_rows(4, xp, rows, r0, r1, off, d, f, g);
        else for (int q = 0; q < R; q++) weight_grad_rows(1, xp, rows, r0, r1, off + q, d, f, g + q * 8);
      }
    }
  }
}

// R rows: dxp[rows[m] + fy*row_stride + j] += Σ_f dy[m, f]·w[f, fy*run + j], for W columns j..j+W-1
INLINE void input_grad_rows(int R, int W, const float *dy, int f, const float *w, int k,
                            const int *rows, int fy, int j, int run, int row_stride, float *dxp) {
  f4 acc[4][2];
  for (int r = 0; r < R; r++) for (int v = 0; v < W; v++) acc[r][v] = wasm_f32x4_splat(0);
  const float *wj = w + fy * run + j;
  for (int o = 0; o < f; o++) {
    f4 b[2];
    for (int v = 0; v < W; v++) b[v] = ld(wj + o * k + 4 * v);
    for (int r = 0; r < R; r++) {
      f4 d = splat(dy + r * f + o);
      for (int v = 0; v < W; v++) acc[r][v] = madd(acc[r][v], d, b[v]);
    }
  }
  for (int r = 0; r < R; r++) {
    float *x = dxp + rows[r] + fy * row_stride + j;
    for (int v = 0; v < W; v++) st(x + 4 * v, wasm_f32x4_add(ld(x + 4 * v), acc[r][v]));
  }
}

INLINE void input_grad_block(int R, const float *dy, int f, const float *w, int k, const int *rows,
                             int sy, int run, int row_stride, float *dxp) {
  for (int fy = 0; fy < sy; fy++) {
    int j = 0;
    for (; j + 8 <= run; j += 8) input_grad_rows(R, 2, dy, f, w, k, rows, fy, j, run, row_stride, dxp);
    for (; j + 4 <= run; j += 4) input_grad_rows(R, 1, dy, f, w, k, rows, fy, j, run, row_stride, dxp);
    for (; j < run; j++)
      for (int r = 0; r < R; r++) {
        float s = 0;
        for (int o = 0; o < f; o++) s += dy[r * f + o] * w[o * k + fy * run + j];
        dxp[rows[r] + fy * row_stride + j] += s;
      }
  }
}

// dxp[rows[m] + off(kk)] += Σ_f dy[m, f]·w[f, kk]  (w unpacked, F×K)
EXPORT(convInputGrad)
void conv_input_grad(const float *dy, int f, const float *w, const int *rows, int m, int sy, int run,
                     int row_stride, float *dxp) {
  int k = sy * run, i = 0;
  for (; i + 4 <= m; i += 4) input_grad_block(4, dy + i * f, f, w, k, rows + i, sy, run, row_stride, dxp);
  for (; i < m; i++) input_grad_block(1, dy + i * f, f, w, k, rows + i, sy, run, row_stride, dxp);
}

// xp = x with a zero border of pad cells
EXPORT(padCopy)
void pad_copy(const float *x, int n, int h, int w, int c, int pad, float *xp) {
  int hp = h + 2 * pad, wp = w + 2 * pad, row = w * c;
  for (int e = 0; e < n; e++) {
    float *xe = xp + e * hp * wp * c;
    zero(xe, pad * wp * c);
    for (int y = 0; y < h; y++) {
      float *line = xe + ((y + pad) * wp) * c;
      zero(line, pad * c);
      copy(line + pad * c, x + (e * h + y) * row, row);
      zero(line + (pad + w) * c, pad * c);
    }
    zero(xe + (pad + h) * wp * c, pad * wp * c);
  }
}

// x = the interior of xp
EXPORT(cropCopy)
void crop_copy(const float *xp, int n, int h, int w, int c, int pad, float *x) {
  int hp = h + 2 * pad, wp = w + 2 * pad, row = w * c;
  for (int e = 0; e < n; e++)
    for (int y = 0; y < h; y++) copy(x + (e * h + y) * row, xp + ((e * hp + y + pad) * wp + pad) * c, row);
}

// out[j] += Σ_i a[i×n + j]
EXPORT(colSums)
void col_sums(const float *a, int m, int n, float *out) {
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    f4 s = wasm_f32x4_splat(0);
    for (int i = 0; i < m; i++) s = wasm_f32x4_add(s, ld(a + i * n + j));
    st(out + j, wasm_f32x4_add(ld(out + j), s));
  }
  for (; j < n; j++) {
    float s = 0;
    for (int i = 0; i < m; i++) s += a[i * n + j];
    out[j] += s;
  }
}

// max over in-bounds window cells, first maximum in (fy, fx) order; arg = input element index
EXPORT(poolForward)
void pool_forward(const float *x, int n, int h, int w, int c, int sy, int sx, int stride, int pad, int oh, int ow, float *y, int *arg) {
  const f4 lanes = wasm_i32x4_make(0, 1, 2, 3);
  for (int e = 0; e < n; e++) {
    int xe = e * h * w * c;
    for (int oy = 0; oy < oh; oy++) for (int ox = 0; ox < ow; ox++) {
      int y0 = oy * stride - pad, x0 = ox * stride - pad;
      int fy0 = max(0, -y0), fy1 = min(sy, h - y0), fx0 = max(0, -x0), fx1 = min(sx, w - x0);
      int first = xe + ((y0 + fy0) * w + x0 + fx0) * c, d = 0;
      for (; d + 4 <= c; d += 4, y += 4, arg += 4) {
        f4 best = ld(x + first + d), at = wasm_i32x4_add(wasm_i32x4_splat(first + d), lanes);
        for (int fy = fy0; fy < fy1; fy++) for (int fx = fx0; fx < fx1; fx++) {
          int idx = xe + ((y0 + fy) * w + x0 + fx) * c + d;
          f4 v = ld(x + idx), more = wasm_f32x4_gt(v, best);
          best = wasm_v128_bitselect(v, best, more);
          at = wasm_v128_bitselect(wasm_i32x4_add(wasm_i32x4_splat(idx), lanes), at, more);
        }
        st(y, best);
        wasm_v128_store(arg, at);
      }
      for (; d < c; d++, y++, arg++) {
        float best = x[first + d];
        int at = first + d;
        for (int fy = fy0; fy < fy1; fy++) for (int fx = fx0; fx < fx1; fx++) {
          int idx = xe + ((y0 + fy) * w + x0 + fx) * c + d;
          if (x[idx] > best) { best = x[idx]; at = idx; }
        }
        *y = best;
        *arg = at;
      }
    }
  }
}

EXPORT(poolBackward)
void pool_backward(const float *dy, const int *arg, int count, float *dx, int in_count) {
  zero(dx, in_count);
  for (int o = 0; o < count; o++) dx[arg[o]] += dy[o];
}

EXPORT(reluForward)
void relu_forward(const float *x, float *y, int count) {
  const f4 z = wasm_f32x4_splat(0);
  int i = 0;
  for (; i + 4 <= count; i += 4) st(y + i, wasm_f32x4_pmax(z, ld(x + i)));
  for (; i < count; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

EXPORT(reluBackward)
void relu_backward(const float *y, const float *dy, float *dx, int count) {
  const f4 z = wasm_f32x4_splat(0);
  int i = 0;
  for (; i + 4 <= count; i += 4) st(dx + i, wasm_v128_and(ld(dy + i), wasm_f32x4_gt(ld(y + i), z)));
  for (; i < count; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
}
