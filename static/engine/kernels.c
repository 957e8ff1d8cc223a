// WebAssembly SIMD (f32x4) kernels of the JS engine; same signatures and
// semantics as kernels-js.js. Pointers are byte offsets into linear memory.
// Rebuild: scripts/build-wasm.sh
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))
#define INLINE static inline __attribute__((always_inline))
#define KC 256
#define RC 256

typedef v128_t f4;

INLINE f4 ld(const float *p) { return wasm_v128_load(p); }
INLINE void st(float *p, f4 v) { wasm_v128_store(p, v); }
INLINE f4 splat(const float *p) { return wasm_v128_load32_splat(p); }
INLINE f4 madd(f4 acc, f4 a, f4 b) { return wasm_f32x4_add(acc, wasm_f32x4_mul(a, b)); }
INLINE int min(int a, int b) { return a < b ? a : b; }
INLINE int max(int a, int b) { return a > b ? a : b; }

INLINE f4 start4(int k0, const float *c, const float *bias) {
  return k0 ? ld(c) : bias ? ld(bias) : wasm_f32x4_splat(0);
}

// R rows of c = a·b (+ bias) over the k range [k0, k1)
INLINE void nn_rows(int R, int n, int k0, int k1, const float *a, int lda, const float *b, int ldb,
                    float *c, int ldc, const float *bias) {
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    f4 acc[4][2];
    for (int r = 0; r < R; r++) {
      acc[r][0] = start4(k0, c + r * ldc + j, bias ? bias + j : 0);
      acc[r][1] = start4(k0, c + r * ldc + j + 4, bias ? bias + j + 4 : 0);
    }
    for (int kk = k0; kk < k1; kk++) {
      f4 b0 = ld(b + kk * ldb + j), b1 = ld(b + kk * ldb + j + 4);
      for (int r = 0; r < R; r++) {
        f4 av = splat(a + r * lda + kk);
        acc[r][0] = madd(acc[r][0], av, b0);
        acc[r][1] = madd(acc[r][1], av, b1);
      }
    }
    for (int r = 0; r < R; r++) {
      st(c + r * ldc + j, acc[r][0]);
      st(c + r * ldc + j + 4, acc[r][1]);
    }
  }
  for (; j + 4 <= n; j += 4) {
    f4 acc[4];
    for (int r = 0; r < R; r++) acc[r] = start4(k0, c + r * ldc + j, bias ? bias + j : 0);
    for (int kk = k0; kk < k1; kk++) {
      f4 b0 = ld(b + kk * ldb + j);
      for (int r = 0; r < R; r++) acc[r] = madd(acc[r], splat(a + r * lda + kk), b0);
    }
    for (int r = 0; r < R; r++) st(c + r * ldc + j, acc[r]);
  }
  for (; j < n; j++) {
    for (int r = 0; r < R; r++) {
      float s = k0 ? c[r * ldc + j] : bias ? bias[j] : 0;
      for (int kk = k0; kk < k1; kk++) s += a[r * lda + kk] * b[kk * ldb + j];
      c[r * ldc + j] = s;
    }
  }
}

// c[m×n] = a[m×k]·b[k×n] (+ bias row)
EXPORT(gemmNN)
void gemm_nn(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc, const float *bias) {
  for (int k0 = 0; k0 < k; k0 += KC) {
    int k1 = min(k, k0 + KC), i = 0;
    for (; i + 4 <= m; i += 4) nn_rows(4, n, k0, k1, a + i * lda, lda, b, ldb, c + i * ldc, ldc, bias);
    for (; i < m; i++) nn_rows(1, n, k0, k1, a + i * lda, lda, b, ldb, c + i * ldc, ldc, bias);
  }
}

// R rows (i..i+R) of c += aᵀ·b over the a/b rows [r0, r1)
INLINE void tn_rows(int R, int q, int r0, int r1, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
  int j = 0;
  for (; j + 8 <= q; j += 8) {
    f4 acc[4][2];
    for (int r = 0; r < R; r++) { acc[r][0] = ld(c + r * ldc + j); acc[r][1] = ld(c + r * ldc + j + 4); }
    for (int t = r0; t < r1; t++) {
      f4 b0 = ld(b + t * ldb + j), b1 = ld(b + t * ldb + j + 4);
      for (int r = 0; r < R; r++) {
        f4 av = splat(a + t * lda + r);
        acc[r][0] = madd(acc[r][0], av, b0);
        acc[r][1] = madd(acc[r][1], av, b1);
      }
    }
    for (int r = 0; r < R; r++) { st(c + r * ldc + j, acc[r][0]); st(c + r * ldc + j + 4, acc[r][1]); }
  }
  for (; j + 4 <= q; j += 4) {
    f4 acc[4];
    for (int r = 0; r < R; r++) acc[r] = ld(c + r * ldc + j);
    for (int t = r0; t < r1; t++) {
      f4 b0 = ld(b + t * ldb + j);
      for (int r = 0; r < R; r++) acc[r] = madd(acc[r], splat(a + t * lda + r), b0);
    }
    for (int r = 0; r < R; r++) st(c + r * ldc + j, acc[r]);
  }
  for (; j < q; j++) {
    for (int r = 0; r < R; r++) {
      float s = c[r * ldc + j];
      for (int t = r0; t < r1; t++) s += a[t * lda + r] * b[t * ldb + j];
      c[r * ldc + j] = s;
    }
  }
}

// c[p×q] += a[m×p]ᵀ·b[m×q]
EXPORT(gemmTN)
void gemm_tn(int m, int p, int q, const float *a, int lda, const float *b, int ldb, float *c, int ldc) {
  for (int r0 = 0; r0 < m; r0 += RC) {
    int r1 = min(m, r0 + RC), i = 0;
    for (; i + 4 <= p; i += 4) tn_rows(4, q, r0, r1, a + i, lda, b, ldb, c + i * ldc, ldc);
    for (; i < p; i++) tn_rows(1, q, r0, r1, a + i, lda, b, ldb, c + i * ldc, ldc);
  }
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

EXPORT(transpose)
void transpose(const float *a, int rows, int cols, float *out) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j];
}

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

INLINE void add(float *dst, const float *src, int len) {
  int i = 0;
  for (; i + 4 <= len; i += 4) st(dst + i, wasm_f32x4_add(ld(dst + i), ld(src + i)));
  for (; i < len; i++) dst[i] += src[i];
}

// cols[(e,oy,ox) × (fy,fx,ch)], zeros where the window leaves the input
EXPORT(im2col)
void im2col(const float *x, int n, int h, int w, int c, int sy, int sx, int stride, int pad, int oh, int ow, float *cols) {
  int row = sx * c;
  for (int e = 0; e < n; e++) {
    const float *xe = x + e * h * w * c;
    for (int oy = 0; oy < oh; oy++) for (int ox = 0; ox < ow; ox++) {
      int x0 = ox * stride - pad, fx0 = max(0, -x0), fx1 = min(sx, w - x0);
      for (int fy = 0; fy < sy; fy++, cols += row) {
        int iy = oy * stride - pad + fy;
        if (iy < 0 || iy >= h || fx0 >= fx1) { zero(cols, row); continue; }
        zero(cols, fx0 * c);
        copy(cols + fx0 * c, xe + (iy * w + x0 + fx0) * c, (fx1 - fx0) * c);
        zero(cols + fx1 * c, (sx - fx1) * c);
      }
    }
  }
}

// dx = adjoint of im2col applied to cols
EXPORT(col2im)
void col2im(const float *cols, int n, int h, int w, int c, int sy, int sx, int stride, int pad, int oh, int ow, float *dx) {
  int row = sx * c;
  zero(dx, n * h * w * c);
  for (int e = 0; e < n; e++) {
    float *xe = dx + e * h * w * c;
    for (int oy = 0; oy < oh; oy++) for (int ox = 0; ox < ow; ox++) {
      int x0 = ox * stride - pad, fx0 = max(0, -x0), fx1 = min(sx, w - x0);
      for (int fy = 0; fy < sy; fy++, cols += row) {
        int iy = oy * stride - pad + fy;
        if (iy < 0 || iy >= h || fx0 >= fx1) continue;
        add(xe + (iy * w + x0 + fx0) * c, cols + fx0 * c, (fx1 - fx0) * c);
      }
    }
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
