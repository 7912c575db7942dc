/* Small convolutions of the fast supernet path on channels-last (N, H, W, C)
   tensors, for the CPU (nas_core.fast.build builds this file): depthwise
   convolutions, grouped 1x1 (pointwise) ones, 3x3 pools, and batch
   normalisation with batch statistics.

   At the CPU presets such a convolution has a few thousand pixels of 8 to 40
   channels: its arithmetic takes microseconds, and a general library call
   costs several times that before any of it runs. These loops do the same sums
   directly. Each kernel exists for float and double; every one returns 0, or 1
   when memory runs out (the caller then raises).

   A stride-1 depthwise conv (the common case) whose channels fill whole vectors
   works on one image's vector of channels at a time, copied into a zero-bordered
   plane small enough for the L1 cache, with several output pixels' sums in
   registers. Other channel counts multiply contiguous runs of whole pixels by
   each tap's weights repeated across the run; other strides loop over output
   pixels. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DEFINE_KERNELS(T, SUF, I)                                                                             \
typedef T vec_##SUF __attribute__((vector_size(32)));                                                      \
typedef I ivec_##SUF __attribute__((vector_size(32))); /* a comparison's lanes */                          \
enum { LANES_##SUF = 32 / sizeof(T) };                                                                     \
static inline vec_##SUF load_##SUF(const T *p) { vec_##SUF v; memcpy(&v, p, 32); return v; }               \
static inline void store_##SUF(T *p, vec_##SUF v) { memcpy(p, &v, 32); }                                   \
                                                                                                           \
/* x (N, H, W, C) inside a zero border of ph rows and pw columns */                                        \
static T *padded_##SUF(const T *x, int64_t N, int64_t H, int64_t W, int64_t C, int64_t ph, int64_t pw) {   \
  int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;                                                                \
  T *xp = calloc((size_t)(N * Hp * Wp * C), sizeof(T));                                                    \
  if (!xp) return NULL;                                                                                    \
  for (int64_t n = 0; n < N; n++)                                                                          \
    for (int64_t h = 0; h < H; h++)                                                                        \
      memcpy(xp + ((n * Hp + h + ph) * Wp + pw) * C, x + (n * H + h) * W * C, sizeof(T) * W * C);          \
  return xp;                                                                                               \
}                                                                                                          \
                                                                                                           \
/* Stride 1, C a whole number of vectors: one image's vector of channels at a time is copied into a        \
   zero-bordered plane of Hp x Wp pixels (small enough to stay in the L1 cache), and for each output row   \
   Q pixels' sums stay in registers through every tap, so each tap's weights are loaded once per Q         \
   pixels. */                                                                                              \
static inline __attribute__((always_inline)) void dw_block_##SUF(const T *xp, const T *w, T *yr, int64_t C, \
                                                                 int64_t Wp, int64_t KH, const int KW,     \
                                                                 const int d, const int Q) {               \
  const int64_t V = LANES_##SUF;                                                                           \
  vec_##SUF s[8] = {{0}}, xv[8 + 4 * 2]; /* a row's input vectors, each loaded once for every tap */       \
  for (int64_t a = 0; a < KH; a++) {                                                                       \
    const T *xa = xp + a * d * Wp * V;                                                                     \
    for (int t = 0; t < Q + (KW - 1) * d; t++) xv[t] = load_##SUF(xa + t * V);                             \
    for (int b = 0; b < KW; b++) {                                                                         \
      const vec_##SUF wv = load_##SUF(w + (a * KW + b) * C);                                               \
      for (int j = 0; j < Q; j++) s[j] += xv[j + b * d] * wv;                                              \
    }                                                                                                      \
  }                                                                                                        \
  for (int j = 0; j < Q; j++) store_##SUF(yr + j * C, s[j]);                                               \
}                                                                                                          \
/* one output row's pixels in blocks of 8, 4 and 1, the kernel's width and dilation as constants */        \
static inline __attribute__((always_inline)) void dw_row_##SUF(const T *pr, const T *w, T *yr, int64_t C,  \
                                                               int64_t Wp, int64_t OW, int64_t KH,         \
                                                               const int KW, const int d) {                \
  const int64_t V = LANES_##SUF;                                                                           \
  int64_t q = 0;                                                                                           \
  for (; q + 8 <= OW; q += 8) dw_block_##SUF(pr + q * V, w, yr + q * C, C, Wp, KH, KW, d, 8);              \
  for (; q + 4 <= OW; q += 4) dw_block_##SUF(pr + q * V, w, yr + q * C, C, Wp, KH, KW, d, 4);              \
  for (; q < OW; q++) dw_block_##SUF(pr + q * V, w, yr + q * C, C, Wp, KH, KW, d, 1);                      \
}                                                                                                          \
/* one image's vector of channels (pixels C apart from x) into the interior of a zero-bordered plane */    \
static inline void fill_plane_##SUF(T *plane, const T *x, int64_t H, int64_t W, int64_t C, int64_t ph,     \
                                    int64_t pw) {                                                          \
  const int64_t V = LANES_##SUF, Wp = W + 2 * pw;                                                          \
  for (int64_t h = 0; h < H; h++)                                                                          \
    for (int64_t q = 0; q < W; q++) store_##SUF(plane + ((h + ph) * Wp + q + pw) * V, load_##SUF(x + (h * W + q) * C)); \
}                                                                                                          \
static int stride1_planes_##SUF(const T *x, const T *w, T *y, int64_t N, int64_t H, int64_t W, int64_t C,  \
                                int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t ph, int64_t pw,    \
                                int64_t d) {                                                               \
  const int64_t V = LANES_##SUF, Wp = W + 2 * pw;                                                          \
  T *plane = calloc((size_t)((H + 2 * ph) * Wp * V), sizeof(T)); /* its border stays zero */               \
  if (!plane) return 1;                                                                                    \
  for (int64_t n = 0; n < N; n++)                                                                          \
    for (int64_t c = 0; c < C; c += V) {                                                                   \
      fill_plane_##SUF(plane, x + n * H * W * C + c, H, W, C, ph, pw);                                     \
      for (int64_t o = 0; o < OH; o++) {                                                                   \
        const T *pr = plane + o * Wp * V;                                                                  \
        T *yr = y + (n * OH + o) * OW * C + c;                                                             \
        switch (KW * 8 + d) {                                                                              \
          case 3 * 8 + 1: dw_row_##SUF(pr, w + c, yr, C, Wp, OW, KH, 3, 1); break;                         \
          case 5 * 8 + 1: dw_row_##SUF(pr, w + c, yr, C, Wp, OW, KH, 5, 1); break;                         \
          case 3 * 8 + 2: dw_row_##SUF(pr, w + c, yr, C, Wp, OW, KH, 3, 2); break;                         \
          case 5 * 8 + 2: dw_row_##SUF(pr, w + c, yr, C, Wp, OW, KH, 5, 2); break;                         \
          case 1 * 8 + 1: dw_row_##SUF(pr, w + c, yr, C, Wp, OW, KH, 1, 1); break;                         \
          default: dw_row_##SUF(pr, w + c, yr, C, Wp, OW, KH, 1, 2); break; /* 1 * 8 + 2 */                \
        }                                                                                                  \
      }                                                                                                    \
    }                                                                                                      \
  free(plane);                                                                                             \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* Stride 1, C a whole number of vectors: dL/dw (taps, KH * KW x C), each image's vector of channels read  \
   from a zero-bordered plane as in the forward, a row of K taps' sums in registers; the sums run over     \
   images, rows and columns in that order */                                                               \
static inline __attribute__((always_inline)) void wg_plane_row_##SUF(const T *plane, const T *g, T *gw,    \
                                                                     int64_t C, int64_t Wp, int64_t OH,    \
                                                                     int64_t OW, int64_t a, int64_t d,     \
                                                                     const int K) {                        \
  const int64_t V = LANES_##SUF;                                                                           \
  vec_##SUF s[8];                                                                                          \
  for (int b = 0; b < K; b++) s[b] = load_##SUF(gw + (a * K + b) * C);                                     \
  for (int64_t o = 0; o < OH; o++) {                                                                       \
    const T *gr = g + o * OW * C, *pr = plane + (o + a * d) * Wp * V;                                      \
    for (int64_t q = 0; q < OW; q++) {                                                                     \
      const vec_##SUF gv = load_##SUF(gr + q * C);                                                         \
      for (int b = 0; b < K; b++) s[b] += load_##SUF(pr + (q + b * d) * V) * gv;                           \
    }                                                                                                      \
  }                                                                                                        \
  for (int b = 0; b < K; b++) store_##SUF(gw + (a * K + b) * C, s[b]);                                     \
}                                                                                                          \
static int wg_planes_##SUF(const T *x, const T *g, T *gw, int64_t N, int64_t H, int64_t W, int64_t C,      \
                           int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t ph, int64_t pw,         \
                           int64_t d) {                                                                    \
  const int64_t V = LANES_##SUF, Wp = W + 2 * pw;                                                          \
  T *plane = calloc((size_t)((H + 2 * ph) * Wp * V), sizeof(T)); /* its border stays zero */               \
  if (!plane) return 1;                                                                                    \
  memset(gw, 0, sizeof(T) * KH * KW * C);                                                                  \
  for (int64_t n = 0; n < N; n++)                                                                          \
    for (int64_t c = 0; c < C; c += V) {                                                                   \
      fill_plane_##SUF(plane, x + n * H * W * C + c, H, W, C, ph, pw);                                     \
      const T *gn = g + n * OH * OW * C + c;                                                               \
      for (int64_t a = 0; a < KH; a++) {                                                                   \
        if (KW == 3) wg_plane_row_##SUF(plane, gn, gw + c, C, Wp, OH, OW, a, d, 3);                        \
        else if (KW == 5) wg_plane_row_##SUF(plane, gn, gw + c, C, Wp, OH, OW, a, d, 5);                   \
        else wg_plane_row_##SUF(plane, gn, gw + c, C, Wp, OH, OW, a, d, 1);                                \
      }                                                                                                    \
    }                                                                                                      \
  free(plane);                                                                                             \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* whether the plane kernels (stride1_planes, wg_planes) take a conv: stride 1, whole vectors of           \
   channels, kernels 1, 3 or 5 taps wide, dilation 1 or 2 (their rows' taps are compile-time constants) */ \
static inline int planes_apply_##SUF(int64_t s, int64_t C, int64_t KW, int64_t d) {                        \
  return s == 1 && C % LANES_##SUF == 0 && (KW == 1 || KW == 3 || KW == 5) && (d == 1 || d == 2);          \
}                                                                                                          \
/* stride 1 on a padded input: y[n, o, q, c] = sum_ab xp[n, o + a d, q + b d, c] w[a, b, c] */             \
static int stride1_##SUF(const T *xp, const T *w, T *y, int64_t N, int64_t Hp, int64_t Wp, int64_t C,      \
                         int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t d) {                      \
  const int64_t L = OW * C, V = LANES_##SUF;                                                               \
  T *wt = malloc(sizeof(T) * KH * KW * L); /* each tap's weights repeated across an output row */          \
  if (!wt) return 1;                                                                                       \
  for (int64_t t = 0; t < KH * KW; t++)                                                                    \
    for (int64_t q = 0; q < OW; q++) memcpy(wt + t * L + q * C, w + t * C, sizeof(T) * C);                 \
  for (int64_t n = 0; n < N; n++)                                                                          \
    for (int64_t o = 0; o < OH; o++) {                                                                     \
      T *yr = y + (n * OH + o) * L;                                                                        \
      const T *xr = xp + (n * Hp + o) * Wp * C;                                                            \
      int64_t i = 0;                                                                                       \
      for (; i + 4 * V <= L; i += 4 * V) {                                                                 \
        vec_##SUF s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                                  \
        for (int64_t a = 0; a < KH; a++)                                                                   \
          for (int64_t b = 0; b < KW; b++) {                                                               \
            const T *xa = xr + (a * d * Wp + b * d) * C + i, *wa = wt + (a * KW + b) * L + i;              \
            s0 += load_##SUF(xa) * load_##SUF(wa);                                                         \
            s1 += load_##SUF(xa + V) * load_##SUF(wa + V);                                                 \
            s2 += load_##SUF(xa + 2 * V) * load_##SUF(wa + 2 * V);                                         \
            s3 += load_##SUF(xa + 3 * V) * load_##SUF(wa + 3 * V);                                         \
          }                                                                                                \
        store_##SUF(yr + i, s0); store_##SUF(yr + i + V, s1);                                              \
        store_##SUF(yr + i + 2 * V, s2); store_##SUF(yr + i + 3 * V, s3);                                  \
      }                                                                                                    \
      for (; i + V <= L; i += V) {                                                                         \
        vec_##SUF s0 = {0};                                                                                \
        for (int64_t a = 0; a < KH; a++)                                                                   \
          for (int64_t b = 0; b < KW; b++)                                                                 \
            s0 += load_##SUF(xr + (a * d * Wp + b * d) * C + i) * load_##SUF(wt + (a * KW + b) * L + i);   \
        store_##SUF(yr + i, s0);                                                                           \
      }                                                                                                    \
      for (; i < L; i++) {                                                                                 \
        T s = 0;                                                                                           \
        for (int64_t a = 0; a < KH; a++)                                                                   \
          for (int64_t b = 0; b < KW; b++) s += xr[(a * d * Wp + b * d) * C + i] * wt[(a * KW + b) * L + i]; \
        yr[i] = s;                                                                                         \
      }                                                                                                    \
    }                                                                                                      \
  free(wt);                                                                                                \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* y (N, OH, OW, C) = the depthwise conv of x (N, H, W, C) with w (KH * KW, C): stride s, padding          \
   (ph, pw), dilation d */                                                                                 \
static int dw_forward_taps_##SUF(const T *x, const T *w, T *y, int64_t N, int64_t H, int64_t W, int64_t C, \
                     int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t s, int64_t ph, int64_t pw,    \
                     int64_t d) {                                                                          \
  if (planes_apply_##SUF(s, C, KW, d))                                                                     \
    return stride1_planes_##SUF(x, w, y, N, H, W, C, OH, OW, KH, KW, ph, pw, d);                           \
  T *xp = padded_##SUF(x, N, H, W, C, ph, pw);                                                             \
  if (!xp) return 1;                                                                                       \
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;                                                          \
  int err = 0;                                                                                             \
  if (s == 1) {                                                                                            \
    err = stride1_##SUF(xp, w, y, N, Hp, Wp, C, OH, OW, KH, KW, d);                                        \
  } else {                                                                                                 \
    for (int64_t n = 0; n < N; n++)                                                                        \
      for (int64_t o = 0; o < OH; o++)                                                                     \
        for (int64_t q = 0; q < OW; q++) {                                                                 \
          T *yr = y + ((n * OH + o) * OW + q) * C;                                                         \
          for (int64_t c = 0; c < C; c++) yr[c] = 0;                                                       \
          for (int64_t a = 0; a < KH; a++)                                                                 \
            for (int64_t b = 0; b < KW; b++) {                                                             \
              const T *xr = xp + ((n * Hp + o * s + a * d) * Wp + q * s + b * d) * C;                      \
              const T *wr = w + (a * KW + b) * C;                                                          \
              for (int64_t c = 0; c < C; c++) yr[c] += xr[c] * wr[c];                                      \
            }                                                                                              \
        }                                                                                                  \
  }                                                                                                        \
  free(xp);                                                                                                \
  return err;                                                                                              \
}                                                                                                          \
                                                                                                           \
/* gw (KH * KW, C) = dL/dw from x and g = dL/dy: sum over n, o, q of g[n, o, q, c] times the input         \
   pixel the tap read */                                                                                   \
static int dw_weight_grad_taps_##SUF(const T *x, const T *g, T *gw, int64_t N, int64_t H, int64_t W, int64_t C, \
                         int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t s, int64_t ph, int64_t pw, \
                         int64_t d) {                                                                      \
  if (planes_apply_##SUF(s, C, KW, d))                                                                     \
    return wg_planes_##SUF(x, g, gw, N, H, W, C, OH, OW, KH, KW, ph, pw, d);                               \
  T *xp = padded_##SUF(x, N, H, W, C, ph, pw);                                                             \
  if (!xp) return 1;                                                                                       \
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw, L = OW * C, V = LANES_##SUF;                             \
  memset(gw, 0, sizeof(T) * KH * KW * C);                                                                  \
  if (s == 1) {                                                                                            \
    T *rows = calloc((size_t)(KH * KW * L), sizeof(T)); /* per tap, the sums over images and rows */       \
    if (!rows) { free(xp); return 1; }                                                                     \
    const int64_t main = L - L % V;                                                                        \
    for (int64_t n = 0; n < N; n++)                                                                        \
      for (int64_t a = 0; a < KH; a++)                                                                     \
        for (int64_t b = 0; b < KW; b++) {                                                                 \
          T *r = rows + (a * KW + b) * L;                                                                  \
          const T *gn = g + n * OH * L, *xn = xp + ((n * Hp + a * d) * Wp + b * d) * C;                    \
          for (int64_t i = 0; i < main; i += V) {                                                          \
            vec_##SUF acc = load_##SUF(r + i);                                                             \
            for (int64_t o = 0; o < OH; o++) acc += load_##SUF(gn + o * L + i) * load_##SUF(xn + o * Wp * C + i); \
            store_##SUF(r + i, acc);                                                                       \
          }                                                                                                \
          for (int64_t i = main; i < L; i++)                                                               \
            for (int64_t o = 0; o < OH; o++) r[i] += gn[o * L + i] * xn[o * Wp * C + i];                   \
        }                                                                                                  \
    for (int64_t t = 0; t < KH * KW; t++)                                                                  \
      for (int64_t i = 0; i < L; i++) gw[t * C + i % C] += rows[t * L + i];                                \
    free(rows);                                                                                            \
  } else {                                                                                                 \
    for (int64_t n = 0; n < N; n++)                                                                        \
      for (int64_t o = 0; o < OH; o++)                                                                     \
        for (int64_t q = 0; q < OW; q++) {                                                                 \
          const T *gr = g + ((n * OH + o) * OW + q) * C;                                                   \
          for (int64_t a = 0; a < KH; a++)                                                                 \
            for (int64_t b = 0; b < KW; b++) {                                                             \
              const T *xr = xp + ((n * Hp + o * s + a * d) * Wp + q * s + b * d) * C;                      \
              T *gwr = gw + (a * KW + b) * C;                                                              \
              for (int64_t c = 0; c < C; c++) gwr[c] += gr[c] * xr[c];                                     \
            }                                                                                              \
        }                                                                                                  \
  }                                                                                                        \
  free(xp);                                                                                                \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* gx (N, H, W, C) = dL/dx, each output pixel's gradient scattered back to the input pixels it read        \
   (the caller computes a stride-1 conv's as a forward conv with the flipped kernel instead) */            \
static int dw_input_grad_taps_##SUF(const T *w, const T *g, T *gx, int64_t N, int64_t H, int64_t W, int64_t C, \
                        int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t s, int64_t ph, int64_t pw, \
                        int64_t d) {                                                                       \
  const int64_t Hp = H + 2 * ph, Wp = W + 2 * pw;                                                          \
  T *gp = calloc((size_t)(N * Hp * Wp * C), sizeof(T));                                                    \
  if (!gp) return 1;                                                                                       \
  for (int64_t n = 0; n < N; n++)                                                                          \
    for (int64_t o = 0; o < OH; o++)                                                                       \
      for (int64_t q = 0; q < OW; q++) {                                                                   \
        const T *gr = g + ((n * OH + o) * OW + q) * C;                                                     \
        for (int64_t a = 0; a < KH; a++)                                                                   \
          for (int64_t b = 0; b < KW; b++) {                                                               \
            T *pr = gp + ((n * Hp + o * s + a * d) * Wp + q * s + b * d) * C;                              \
            const T *wr = w + (a * KW + b) * C;                                                            \
            for (int64_t c = 0; c < C; c++) pr[c] += gr[c] * wr[c];                                        \
          }                                                                                                \
      }                                                                                                    \
  for (int64_t n = 0; n < N; n++)                                                                          \
    for (int64_t h = 0; h < H; h++)                                                                        \
      memcpy(gx + (n * H + h) * W * C, gp + ((n * Hp + h + ph) * Wp + pw) * C, sizeof(T) * W * C);         \
  free(gp);                                                                                                \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* Pointwise: y[p, g Co + o] = sum_i x[p, g Ci + i] w[g, i, o] over the P pixels, G groups                 \
   (x: P x G Ci, y: P x G Co; w: G x Ci x Co). dL/dx is the same sum with the weights transposed.          \
   When Co fills whole vectors, four pixels at a time share each load of the weights. */                   \
static int pw_forward_ci_co_##SUF(const T *x, const T *w, T *y, int64_t P, int64_t G, int64_t Ci, int64_t Co) { \
  const int64_t V = LANES_##SUF, Xs = G * Ci, Ys = G * Co;                                                 \
  for (int64_t p0 = 0; p0 < P; p0 += 64) { /* tiles of pixels, each read once for every group */           \
    const int64_t p1 = P - p0 < 64 ? P : p0 + 64;                                                          \
    for (int64_t g = 0; g < G; g++) {                                                                      \
      const T *xg = x + g * Ci, *wg = w + g * Ci * Co;                                                     \
      T *yg = y + g * Co;                                                                                  \
      if (Co % V == 0) {                                                                                   \
        for (int64_t ob = 0; ob < Co; ob += V) {                                                           \
          int64_t p = p0;                                                                                  \
          for (; p + 4 <= p1; p += 4) {                                                                    \
            vec_##SUF s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                              \
            const T *x0 = xg + p * Xs;                                                                     \
            for (int64_t i = 0; i < Ci; i++) {                                                             \
              vec_##SUF wv = load_##SUF(wg + i * Co + ob);                                                 \
              s0 += x0[i] * wv; s1 += x0[Xs + i] * wv; s2 += x0[2 * Xs + i] * wv; s3 += x0[3 * Xs + i] * wv; \
            }                                                                                              \
            store_##SUF(yg + p * Ys + ob, s0); store_##SUF(yg + (p + 1) * Ys + ob, s1);                    \
            store_##SUF(yg + (p + 2) * Ys + ob, s2); store_##SUF(yg + (p + 3) * Ys + ob, s3);              \
          }                                                                                                \
          for (; p < p1; p++) {                                                                            \
            vec_##SUF s0 = {0};                                                                            \
            for (int64_t i = 0; i < Ci; i++) s0 += xg[p * Xs + i] * load_##SUF(wg + i * Co + ob);          \
            store_##SUF(yg + p * Ys + ob, s0);                                                             \
          }                                                                                                \
        }                                                                                                  \
      } else {                                                                                             \
        for (int64_t p = p0; p < p1; p++) {                                                                \
          T *yr = yg + p * Ys;                                                                             \
          for (int64_t o = 0; o < Co; o++) yr[o] = 0;                                                      \
          for (int64_t i = 0; i < Ci; i++) {                                                               \
            const T xi = xg[p * Xs + i], *wr = wg + i * Co;                                                \
            for (int64_t o = 0; o < Co; o++) yr[o] += xi * wr[o];                                          \
          }                                                                                                \
        }                                                                                                  \
      }                                                                                                    \
    }                                                                                                      \
  }                                                                                                        \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* dL/dw (G x Ci x Co) = sum over pixels of x[p, g Ci + i] g[p, g Co + o]; eight input channels at a       \
   time keep their sums in registers */                                                                    \
static int pw_weight_grad_ci_co_##SUF(const T *x, const T *g, T *gw, int64_t P, int64_t G, int64_t Ci, int64_t Co) { \
  const int64_t V = LANES_##SUF, Xs = G * Ci, Ys = G * Co;                                                 \
  memset(gw, 0, sizeof(T) * G * Ci * Co);                                                                  \
  for (int64_t p0 = 0; p0 < P; p0 += 64) { /* tiles of pixels; each sum continues in pixel order */        \
    const int64_t p1 = P - p0 < 64 ? P : p0 + 64;                                                          \
    for (int64_t k = 0; k < G; k++) {                                                                      \
      const T *xk = x + k * Ci, *gk = g + k * Co;                                                          \
      T *wk = gw + k * Ci * Co;                                                                            \
      int64_t i0 = 0;                                                                                      \
      if (Co % V == 0)                                                                                     \
        for (; i0 + 8 <= Ci; i0 += 8)                                                                      \
          for (int64_t ob = 0; ob < Co; ob += V) {                                                         \
            vec_##SUF s[8];                                                                                \
            for (int j = 0; j < 8; j++) s[j] = load_##SUF(wk + (i0 + j) * Co + ob);                        \
            for (int64_t p = p0; p < p1; p++) {                                                            \
              const vec_##SUF gv = load_##SUF(gk + p * Ys + ob);                                           \
              const T *xr = xk + p * Xs + i0;                                                              \
              for (int j = 0; j < 8; j++) s[j] += xr[j] * gv;                                              \
            }                                                                                              \
            for (int j = 0; j < 8; j++) store_##SUF(wk + (i0 + j) * Co + ob, s[j]);                        \
          }                                                                                                \
      for (int64_t p = p0; p < p1; p++)                                                                    \
        for (int64_t i = i0; i < Ci; i++) {                                                                \
          const T xi = xk[p * Xs + i], *gr = gk + p * Ys;                                                  \
          T *ar = wk + i * Co;                                                                             \
          for (int64_t o = 0; o < Co; o++) ar[o] += xi * gr[o];                                            \
        }                                                                                                  \
    }                                                                                                      \
  }                                                                                                        \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* The running statistics, kept in one segment of channels per BN module (ms[s], vs[s]: ns[s] channels;    \
   ms NULL: none kept), moved channel after channel in the channels' order (s, j: the next channel's       \
   segment and place in it). */                                                                            \
typedef struct { T *const *ms, *const *vs; const int64_t *ns; int64_t s, j; } running_##SUF;               \
static inline void running_move_##SUF(running_##SUF *r, T mean, T var, double momentum) {                  \
  if (!r->ms) return;                                                                                      \
  T *m = r->ms[r->s] + r->j, *v = r->vs[r->s] + r->j;                                                      \
  *m = (T)((1.0 - momentum) * *m + momentum * mean);                                                       \
  *v = (T)((1.0 - momentum) * *v + momentum * var);                                                        \
  if (++r->j == r->ns[r->s]) { r->s++; r->j = 0; }                                                         \
}                                                                                                          \
                                                                                                           \
/* Batch norm with batch statistics over the P pixels of B blocks of channels xs[b] (P x cs[b]), which     \
   together are the channels of y (P x C, C = sum cs): y = (x - mean) invstd w (w NULL: 1); mean and       \
   invstd out (for the backward); the running statistics (running_SUF) move by momentum, the variance's    \
   unbiased (as torch.nn.functional.batch_norm). One block at a time: its statistics in one pass           \
   (Welford's), then its output, read again while it is still in the cache (the blocks of a wave are       \
   normalised at once without first being copied into one tensor). */                                      \
int bn_blocks_forward_##SUF(const T *const *xs, const int64_t *cs, int64_t B, const T *w, T *y, T *mean,   \
                            T *invstd, T *const *rms, T *const *rvs, const int64_t *rns, int64_t P,        \
                            double eps, double momentum) {                                                 \
  int64_t C = 0, off = 0;                                                                                  \
  running_##SUF run = {rms, rvs, rns, 0, 0};                                                               \
  for (int64_t b = 0; b < B; b++) C += cs[b];                                                              \
  T *m2 = calloc((size_t)C, sizeof(T));                                                                    \
  if (!m2) return 1;                                                                                       \
  for (int64_t b = 0; b < B; off += cs[b], b++) {                                                          \
    const T *x = xs[b]; const int64_t Cb = cs[b];                                                          \
    T *mb = mean + off, *qb = m2 + off;                                                                    \
    for (int64_t c = 0; c < Cb; c++) mb[c] = 0;                                                            \
    for (int64_t p = 0; p < P; p++) {                                                                      \
      const T *xr = x + p * Cb; const T inv = (T)1 / (T)(p + 1);                                           \
      for (int64_t c = 0; c < Cb; c++) { T e = xr[c] - mb[c]; mb[c] += e * inv; qb[c] += e * (xr[c] - mb[c]); } \
    }                                                                                                      \
    for (int64_t c = off; c < off + Cb; c++) {                                                             \
      invstd[c] = (T)(1.0 / sqrt((double)(m2[c] / (T)P) + eps));                                           \
      running_move_##SUF(&run, mean[c], P > 1 ? m2[c] / (T)(P - 1) : m2[c], momentum);                    \
      m2[c] = w ? invstd[c] * w[c] : invstd[c]; /* now the scale */                                        \
    }                                                                                                      \
    for (int64_t p = 0; p < P; p++) {                                                                      \
      const T *xr = x + p * Cb; T *yr = y + p * C + off;                                                   \
      for (int64_t c = 0; c < Cb; c++) yr[c] = (xr[c] - mb[c]) * qb[c];                                    \
    }                                                                                                      \
  }                                                                                                        \
  free(m2);                                                                                                \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* Its backward from g = dL/dy (P x C): each block's gx (gxs NULL, or gxs[b] NULL: not wanted), and        \
   gw = sum_p g xhat (NULL: not wanted) */                                                                 \
int bn_blocks_backward_##SUF(const T *const *xs, const int64_t *cs, int64_t B, const T *w, const T *g,     \
                             const T *mean, const T *invstd, T *const *gxs, T *gw, int64_t P) {            \
  int64_t C = 0, off = 0;                                                                                  \
  for (int64_t b = 0; b < B; b++) C += cs[b];                                                              \
  T *sg = calloc((size_t)(3 * C), sizeof(T)), *sgx = sg + C, *scale = sg + 2 * C;                          \
  if (!sg) return 1;                                                                                       \
  for (int64_t b = 0; b < B; off += cs[b], b++) {                                                          \
    const T *x = xs[b], *mb = mean + off; const int64_t Cb = cs[b];                                        \
    T *sgb = sg + off, *sxb = sgx + off, *scb = scale + off;                                               \
    for (int64_t p = 0; p < P; p++) {                                                                      \
      const T *xr = x + p * Cb, *gr = g + p * C + off;                                                     \
      for (int64_t c = 0; c < Cb; c++) { sgb[c] += gr[c]; sxb[c] += gr[c] * (xr[c] - mb[c]); }             \
    }                                                                                                      \
    if (gw) for (int64_t c = off; c < off + Cb; c++) gw[c] = sgx[c] * invstd[c];                           \
    T *gx = gxs ? gxs[b] : NULL;                                                                           \
    if (!gx) continue;                                                                                     \
    /* gx = w invstd (g - sum g / P - (x - mean) invstd^2 sum g (x - mean) / P) */                         \
    for (int64_t c = off; c < off + Cb; c++) {                                                             \
      scale[c] = w ? w[c] * invstd[c] : invstd[c];                                                         \
      sg[c] = sg[c] / (T)P;                                                                                \
      sgx[c] = sgx[c] * invstd[c] * invstd[c] / (T)P;                                                      \
    }                                                                                                      \
    for (int64_t p = 0; p < P; p++) {                                                                      \
      const T *xr = x + p * Cb, *gr = g + p * C + off; T *gxr = gx + p * Cb;                               \
      for (int64_t c = 0; c < Cb; c++) gxr[c] = scb[c] * (gr[c] - sgb[c] - (xr[c] - mb[c]) * sxb[c]);      \
    }                                                                                                      \
  }                                                                                                        \
  free(sg);                                                                                                \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* Batch norm of blocks, as bn_blocks_forward, whose output goes by parts of c channels (part q: channels  \
   q c .. q c + c - 1 of the blocks' concatenation) straight to where it is used: written to (acc[q] 0) or \
   added into (acc[q] 1) outs[q], a row of os[q] values per pixel. A wave's ops whose outputs are summed   \
   into one node then cost one pass, not a BN output and an add per op (and no split of its gradient).     \
   Statistics as two passes of column sums (no cancellation), four rows added together before they         \
   reach the running sum (one chain per channel made each row wait for the previous one's add). */         \
static inline __attribute__((always_inline)) void bn_colsums_##SUF(const T *x, int64_t Cb, int64_t P,      \
                                                                   const T *m, const int squares, T *s) {  \
  const int64_t V = LANES_##SUF, main = Cb - Cb % V;                                                       \
  for (int64_t c = 0; c < Cb; c++) s[c] = 0;                                                               \
  int64_t p = 0;                                                                                           \
  for (; p + 4 <= P; p += 4) {                                                                             \
    const T *r = x + p * Cb;                                                                               \
    for (int64_t c = 0; c < main; c += V) {                                                                \
      const vec_##SUF mv = squares ? load_##SUF(m + c) : (vec_##SUF){0};                                   \
      vec_##SUF d0 = load_##SUF(r + c) - mv, d1 = load_##SUF(r + Cb + c) - mv;                             \
      vec_##SUF d2 = load_##SUF(r + 2 * Cb + c) - mv, d3 = load_##SUF(r + 3 * Cb + c) - mv;                \
      if (squares) { d0 *= d0; d1 *= d1; d2 *= d2; d3 *= d3; }                                             \
      store_##SUF(s + c, load_##SUF(s + c) + ((d0 + d1) + (d2 + d3)));                                     \
    }                                                                                                      \
    for (int64_t c = main; c < Cb; c++)                                                                    \
      for (int k = 0; k < 4; k++) { const T d = r[k * Cb + c] - (squares ? m[c] : 0); s[c] += squares ? d * d : d; }\
  }                                                                                                        \
  for (; p < P; p++)                                                                                       \
    for (int64_t c = 0; c < Cb; c++) { const T d = x[p * Cb + c] - (squares ? m[c] : 0); s[c] += squares ? d * d : d; }\
}                                                                                                          \
/* Each channel's mean and sum of squared deviations (m2) over the P rows of x (row stride Cb), reading x  \
   once from memory: chunks of rows small enough for the L1 cache, each read twice (its mean, then the     \
   deviations from it: no cancellation) and merged into the running moments (Chan et al.'s update).        \
   tmp: 2 Cb values. */                                                                                    \
static void bn_moments_##SUF(const T *x, int64_t Cb, int64_t P, T *mean, T *m2, T *tmp) {                  \
  int64_t R = (int64_t)(16384 / sizeof(T)) / (Cb > 0 ? Cb : 1);                                            \
  R = R < 8 ? 8 : R - R % 4;                                                                               \
  T *cm = tmp, *cq = tmp + Cb;                                                                             \
  for (int64_t k = 0; k < Cb; k++) { mean[k] = 0; m2[k] = 0; }                                             \
  for (int64_t p0 = 0, seen = 0; p0 < P; p0 += R) {                                                        \
    const int64_t n = P - p0 < R ? P - p0 : R, total = seen + n;                                           \
    const T *xc = x + p0 * Cb;                                                                             \
    bn_colsums_##SUF(xc, Cb, n, NULL, 0, cm);                                                              \
    for (int64_t k = 0; k < Cb; k++) cm[k] /= (T)n;                                                        \
    bn_colsums_##SUF(xc, Cb, n, cm, 1, cq);                                                                \
    const T fb = (T)n / (T)total, fab = (T)seen * (T)n / (T)total;                                         \
    for (int64_t k = 0; k < Cb; k++) {                                                                     \
      const T delta = cm[k] - mean[k];                                                                     \
      mean[k] += delta * fb;                                                                               \
      m2[k] += cq[k] + delta * delta * fab;                                                                \
    }                                                                                                      \
    seen = total;                                                                                          \
  }                                                                                                        \
}                                                                                                          \
/* rows of a chunk: R rows of Cb values in about 16 KB (the L1 cache), at least 4 */                       \
static inline int64_t bn_chunk_##SUF(int64_t Cb) {                                                         \
  const int64_t R = (int64_t)(16384 / sizeof(T)) / (Cb > 0 ? Cb : 1);                                      \
  return R < 4 ? 4 : R;                                                                                    \
}                                                                                                          \
int bn_parts_forward_##SUF(const T *const *xs, const int64_t *cs, int64_t B, int64_t c, const T *w,        \
                           T *const *outs, const int64_t *os, const int64_t *acc, T *mean, T *invstd,      \
                           T *const *rms, T *const *rvs, const int64_t *rns, int64_t P, double eps,        \
                           double momentum) {                                                              \
  int64_t C = 0;                                                                                           \
  running_##SUF run = {rms, rvs, rns, 0, 0};                                                               \
  for (int64_t b = 0; b < B; b++) C += cs[b];                                                              \
  T *sc = malloc(sizeof(T) * (size_t)(3 * C)); /* the scales, then bn_moments' tmp */                      \
  if (!sc) return 1;                                                                                       \
  const int64_t V = LANES_##SUF, main = c - c % V;                                                         \
  for (int64_t b = 0, off = 0; b < B; off += cs[b], b++) {                                                 \
    const T *x = xs[b]; const int64_t Cb = cs[b], q0 = off / c, nq = Cb / c, R = bn_chunk_##SUF(Cb);       \
    T *mb = mean + off, *qb = sc + off;                                                                    \
    bn_moments_##SUF(x, Cb, P, mb, qb, sc + C + off);                                                      \
    for (int64_t k = off; k < off + Cb; k++) {                                                             \
      invstd[k] = (T)(1.0 / sqrt((double)(sc[k] / (T)P) + eps));                                           \
      running_move_##SUF(&run, mean[k], P > 1 ? sc[k] / (T)(P - 1) : sc[k], momentum);                    \
      sc[k] = w ? invstd[k] * w[k] : invstd[k]; /* now the scale */                                        \
    }                                                                                                      \
    /* the output chunk by chunk of rows (read from the L1 cache), part by part (its mean and scale        \
       in registers through the chunk) */                                                                  \
    for (int64_t p0 = 0; p0 < P; p0 += R) {                                                                \
      const int64_t n = P - p0 < R ? P - p0 : R;                                                           \
      for (int64_t j = 0; j < nq; j++) {                                                                   \
        const int64_t q = q0 + j, so = os[q];                                                              \
        const T *xj = x + p0 * Cb + j * c, *m = mb + j * c, *s = qb + j * c;                               \
        T *o = outs[q] + p0 * so;                                                                          \
        for (int64_t k = 0; k < main; k += V) {                                                            \
          const vec_##SUF mv = load_##SUF(m + k), sv = load_##SUF(s + k);                                  \
          if (acc[q])                                                                                      \
            for (int64_t r = 0; r < n; r++)                                                                \
              store_##SUF(o + r * so + k, load_##SUF(o + r * so + k) + (load_##SUF(xj + r * Cb + k) - mv) * sv);\
          else                                                                                             \
            for (int64_t r = 0; r < n; r++) store_##SUF(o + r * so + k, (load_##SUF(xj + r * Cb + k) - mv) * sv);\
        }                                                                                                  \
        for (int64_t k = main; k < c; k++)                                                                 \
          for (int64_t r = 0; r < n; r++) {                                                                \
            const T v = (xj[r * Cb + k] - m[k]) * s[k];                                                    \
            o[r * so + k] = acc[q] ? o[r * so + k] + v : v;                                                \
          }                                                                                                \
      }                                                                                                    \
    }                                                                                                      \
  }                                                                                                        \
  free(sc);                                                                                                \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* Its backward: part q's g = dL/d(its output) is a row of gst[q] values per pixel at gs[q] (the gradient  \
   of the sum it went into); each block's gx (gxs NULL, or gxs[b] NULL: not wanted) and gw (NULL: not      \
   wanted) as bn_blocks_backward. Chunk by chunk of rows, part by part, as the forward's output. */        \
int bn_parts_backward_##SUF(const T *const *xs, const int64_t *cs, int64_t B, int64_t c, const T *w,       \
                            const T *const *gs, const int64_t *gst, const T *mean, const T *invstd,        \
                            T *const *gxs, T *gw, int64_t P) {                                             \
  int64_t C = 0;                                                                                           \
  for (int64_t b = 0; b < B; b++) C += cs[b];                                                              \
  T *sg = calloc((size_t)(3 * C), sizeof(T)), *sgx = sg + C, *scale = sg + 2 * C;                          \
  if (!sg) return 1;                                                                                       \
  const int64_t V = LANES_##SUF, main = c - c % V;                                                         \
  for (int64_t b = 0, off = 0; b < B; off += cs[b], b++) {                                                 \
    const T *x = xs[b]; const int64_t Cb = cs[b], q0 = off / c, nq = Cb / c, R = bn_chunk_##SUF(Cb);       \
    for (int64_t p0 = 0; p0 < P; p0 += R) {                                                                \
      const int64_t n = P - p0 < R ? P - p0 : R;                                                           \
      for (int64_t j = 0; j < nq; j++) {                                                                   \
        const int64_t q = q0 + j, at = off + j * c, gq = gst[q];                                           \
        const T *m = mean + at, *g = gs[q] + p0 * gq, *xj = x + p0 * Cb + j * c;                           \
        for (int64_t k = 0; k < main; k += V) {                                                            \
          const vec_##SUF mv = load_##SUF(m + k);                                                          \
          vec_##SUF a = load_##SUF(sg + at + k), e = load_##SUF(sgx + at + k);                             \
          for (int64_t r = 0; r < n; r++) {                                                                \
            const vec_##SUF u = load_##SUF(g + r * gq + k);                                                \
            a += u; e += u * (load_##SUF(xj + r * Cb + k) - mv);                                           \
          }                                                                                                \
          store_##SUF(sg + at + k, a); store_##SUF(sgx + at + k, e);                                       \
        }                                                                                                  \
        for (int64_t k = main; k < c; k++)                                                                 \
          for (int64_t r = 0; r < n; r++) {                                                                \
            sg[at + k] += g[r * gq + k];                                                                   \
            sgx[at + k] += g[r * gq + k] * (xj[r * Cb + k] - m[k]);                                        \
          }                                                                                                \
      }                                                                                                    \
    }                                                                                                      \
    if (gw) for (int64_t k = off; k < off + Cb; k++) gw[k] = sgx[k] * invstd[k];                           \
    T *gx = gxs ? gxs[b] : NULL;                                                                           \
    if (!gx) continue;                                                                                     \
    /* gx = w invstd (g - sum g / P - (x - mean) invstd^2 sum g (x - mean) / P) */                         \
    for (int64_t k = off; k < off + Cb; k++) {                                                             \
      scale[k] = w ? w[k] * invstd[k] : invstd[k];                                                         \
      sg[k] = sg[k] / (T)P;                                                                                \
      sgx[k] = sgx[k] * invstd[k] * invstd[k] / (T)P;                                                      \
    }                                                                                                      \
    for (int64_t p0 = 0; p0 < P; p0 += R) {                                                                \
      const int64_t n = P - p0 < R ? P - p0 : R;                                                           \
      for (int64_t j = 0; j < nq; j++) {                                                                   \
        const int64_t q = q0 + j, at = off + j * c, gq = gst[q];                                           \
        const T *g = gs[q] + p0 * gq, *xj = x + p0 * Cb + j * c;                                           \
        T *o = gx + p0 * Cb + j * c;                                                                       \
        for (int64_t k = 0; k < main; k += V) {                                                            \
          const vec_##SUF mv = load_##SUF(mean + at + k), sv = load_##SUF(scale + at + k);                 \
          const vec_##SUF av = load_##SUF(sg + at + k), ev = load_##SUF(sgx + at + k);                     \
          for (int64_t r = 0; r < n; r++)                                                                  \
            store_##SUF(o + r * Cb + k,                                                                    \
                        sv * (load_##SUF(g + r * gq + k) - av - (load_##SUF(xj + r * Cb + k) - mv) * ev)); \
        }                                                                                                  \
        for (int64_t k = main; k < c; k++)                                                                 \
          for (int64_t r = 0; r < n; r++)                                                                  \
            o[r * Cb + k] = scale[at + k] * (g[r * gq + k] - sg[at + k] - (xj[r * Cb + k] - mean[at + k]) * sgx[at + k]);\
      }                                                                                                    \
    }                                                                                                      \
  }                                                                                                        \
  free(sg);                                                                                                \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* 3x3 pooling with padding 1 and stride s of x (N, H, W, C) into (N, OH, OW, C), as PyTorch's: a max      \
   over the window's input pixels (the first maximum in row order, or the last NaN, is the one whose       \
   tap, 0..8, goes to idx for the backward), or their mean (padding not counted). The window of output     \
   (o, q) is rows h0..h1 - 1 and columns w0..w1 - 1; whole vectors of channels where C allows. */          \
static inline void window_##SUF(int64_t o, int64_t q, int64_t s, int64_t H, int64_t W, int64_t *h0,        \
                                int64_t *h1, int64_t *w0, int64_t *w1) {                                   \
  *h0 = o * s - 1 < 0 ? 0 : o * s - 1; *h1 = o * s + 2 > H ? H : o * s + 2;                                \
  *w0 = q * s - 1 < 0 ? 0 : q * s - 1; *w1 = q * s + 2 > W ? W : q * s + 2;                                \
}                                                                                                          \
/* the tap (0..8, row by row) of output (o, q)'s window that reads input pixel (h, w) */                   \
static inline int64_t tap_##SUF(int64_t o, int64_t q, int64_t s, int64_t h, int64_t w) {                   \
  return (h - o * s + 1) * 3 + w - q * s + 1;                                                              \
}                                                                                                          \
int max_pool_##SUF(const T *x, T *y, I *idx, int64_t N, int64_t H, int64_t W, int64_t C, int64_t OH,       \
                   int64_t OW, int64_t s) {                                                                \
  const int64_t V = LANES_##SUF, main = C % V == 0 ? C : 0;                                                \
  for (int64_t n = 0; n < N; n++)                                                                          \
    for (int64_t o = 0; o < OH; o++)                                                                       \
      for (int64_t q = 0; q < OW; q++) {                                                                   \
        int64_t h0, h1, w0, w1;                                                                            \
        window_##SUF(o, q, s, H, W, &h0, &h1, &w0, &w1);                                                   \
        const int64_t at = ((n * OH + o) * OW + q) * C, t0 = tap_##SUF(o, q, s, h0, w0);                   \
        const T *x0 = x + ((n * H + h0) * W + w0) * C;                                                     \
        for (int64_t c = 0; c < main; c += V) {                                                            \
          vec_##SUF m = load_##SUF(x0 + c);                                                                \
          ivec_##SUF id = (ivec_##SUF){0} + (I)t0;                                                         \
          for (int64_t h = h0; h < h1; h++)                                                                \
            for (int64_t w = (h == h0 ? w0 + 1 : w0); w < w1; w++) {                                       \
              const vec_##SUF v = load_##SUF(x + ((n * H + h) * W + w) * C + c);                           \
              const ivec_##SUF take = (v > m) | (v != v);                                                  \
              m = (vec_##SUF)(((ivec_##SUF)v & take) | ((ivec_##SUF)m & ~take));                           \
              id = (((ivec_##SUF){0} + (I)tap_##SUF(o, q, s, h, w)) & take) | (id & ~take);                \
            }                                                                                              \
          store_##SUF(y + at + c, m); memcpy(idx + at + c, &id, sizeof id);                                \
        }                                                                                                  \
        for (int64_t c = main; c < C; c++) {                                                               \
          T m = x0[c]; I id = (I)t0;                                                                       \
          for (int64_t h = h0; h < h1; h++)                                                                \
            for (int64_t w = (h == h0 ? w0 + 1 : w0); w < w1; w++) {                                       \
              const T v = x[((n * H + h) * W + w) * C + c];                                                \
              if (v > m || v != v) { m = v; id = (I)tap_##SUF(o, q, s, h, w); }                            \
            }                                                                                              \
          y[at + c] = m; idx[at + c] = id;                                                                 \
        }                                                                                                  \
      }                                                                                                    \
  return 0;                                                                                                \
}                                                                                                          \
/* its input gradient: each output's g added to the input pixel its tap idx read */                        \
int max_pool_backward_##SUF(const T *g, const I *idx, T *gx, int64_t N, int64_t H, int64_t W, int64_t C,   \
                            int64_t OH, int64_t OW, int64_t s) {                                           \
  const int64_t V = LANES_##SUF, main = C % V == 0 ? C : 0;                                                \
  memset(gx, 0, sizeof(T) * N * H * W * C);                                                                \
  for (int64_t n = 0; n < N; n++)                                                                          \
    for (int64_t o = 0; o < OH; o++)                                                                       \
      for (int64_t q = 0; q < OW; q++) {                                                                   \
        int64_t h0, h1, w0, w1;                                                                            \
        window_##SUF(o, q, s, H, W, &h0, &h1, &w0, &w1);                                                   \
        const int64_t at = ((n * OH + o) * OW + q) * C;                                                    \
        for (int64_t h = h0; h < h1; h++)                                                                  \
          for (int64_t w = w0; w < w1; w++) {                                                              \
            T *gxr = gx + ((n * H + h) * W + w) * C; const I t = (I)tap_##SUF(o, q, s, h, w);              \
            for (int64_t c = 0; c < main; c += V) {                                                        \
              ivec_##SUF id; memcpy(&id, idx + at + c, sizeof id);                                         \
              const vec_##SUF gv = (vec_##SUF)((ivec_##SUF)load_##SUF(g + at + c) & (id == t));            \
              store_##SUF(gxr + c, load_##SUF(gxr + c) + gv);                                              \
            }                                                                                              \
            for (int64_t c = main; c < C; c++)                                                             \
              if (idx[at + c] == t) gxr[c] += g[at + c];                                                   \
          }                                                                                                \
      }                                                                                                    \
  return 0;                                                                                                \
}                                                                                                          \
/* the mean (backward: x is g, y is gx, and each output's g / count goes to its window's pixels) */        \
int avg_pool_##SUF(const T *x, T *y, int64_t N, int64_t H, int64_t W, int64_t C, int64_t OH, int64_t OW,   \
                   int64_t s, int64_t backward) {                                                          \
  const int64_t V = LANES_##SUF, main = C % V == 0 ? C : 0;                                                \
  if (backward) memset(y, 0, sizeof(T) * N * H * W * C);                                                   \
  for (int64_t n = 0; n < N; n++)                                                                          \
    for (int64_t o = 0; o < OH; o++)                                                                       \
      for (int64_t q = 0; q < OW; q++) {                                                                   \
        int64_t h0, h1, w0, w1;                                                                            \
        window_##SUF(o, q, s, H, W, &h0, &h1, &w0, &w1);                                                   \
        const T count = (T)((h1 - h0) * (w1 - w0));                                                        \
        const int64_t at = ((n * OH + o) * OW + q) * C;                                                    \
        if (backward) {                                                                                    \
          for (int64_t h = h0; h < h1; h++)                                                                \
            for (int64_t w = w0; w < w1; w++) {                                                            \
              T *gxr = y + ((n * H + h) * W + w) * C;                                                      \
              for (int64_t c = 0; c < main; c += V)                                                        \
                store_##SUF(gxr + c, load_##SUF(gxr + c) + load_##SUF(x + at + c) / count);                \
              for (int64_t c = main; c < C; c++) gxr[c] += x[at + c] / count;                              \
            }                                                                                              \
        } else {                                                                                           \
          for (int64_t c = 0; c < main; c += V) {                                                          \
            vec_##SUF acc = {0};                                                                           \
            for (int64_t h = h0; h < h1; h++)                                                              \
              for (int64_t w = w0; w < w1; w++) acc += load_##SUF(x + ((n * H + h) * W + w) * C + c);      \
            store_##SUF(y + at + c, acc / count);                                                          \
          }                                                                                                \
          for (int64_t c = main; c < C; c++) {                                                             \
            T acc = 0;                                                                                     \
            for (int64_t h = h0; h < h1; h++)                                                              \
              for (int64_t w = w0; w < w1; w++) acc += x[((n * H + h) * W + w) * C + c];                   \
            y[at + c] = acc / count;                                                                       \
          }                                                                                                \
        }                                                                                                  \
      }                                                                                                    \
  return 0;                                                                                                \
}                                                                                                          \
                                                                                                           \
/* The entry points take PyTorch's weight layouts: a depthwise kernel (C, KH * KW) (flip: rotated by 180   \
   degrees, for an input gradient), a pointwise one (G, Co, Ci), and give gradients in them. */            \
/* dst (G, cols, rows) = src (G, rows, cols), transposed per group (rev: dst's rows in reverse order) */   \
static void transpose_##SUF(const T *src, T *dst, int64_t G, int64_t R, int64_t Cc, int64_t rev) {         \
  for (int64_t g = 0; g < G; g++)                                                                          \
    for (int64_t r = 0; r < R; r++)                                                                        \
      for (int64_t c = 0; c < Cc; c++) dst[(g * Cc + (rev ? Cc - 1 - c : c)) * R + r] = src[(g * R + r) * Cc + c]; \
}                                                                                                          \
/* a transposed copy of src (NULL when memory runs out) */                                                 \
static T *transposed_##SUF(const T *src, int64_t G, int64_t R, int64_t Cc, int64_t rev) {                  \
  T *t = malloc(sizeof(T) * G * R * Cc);                                                                   \
  if (t) transpose_##SUF(src, t, G, R, Cc, rev);                                                           \
  return t;                                                                                                \
}                                                                                                          \
int dw_forward_##SUF(const T *x, const T *w, T *y, int64_t N, int64_t H, int64_t W, int64_t C,             \
                     int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t s, int64_t ph, int64_t pw,    \
                     int64_t d, int64_t flip) {                                                            \
  T *t = transposed_##SUF(w, 1, C, KH * KW, flip);                                                         \
  if (!t) return 1;                                                                                        \
  int err = dw_forward_taps_##SUF(x, t, y, N, H, W, C, OH, OW, KH, KW, s, ph, pw, d);                      \
  free(t);                                                                                                 \
  return err;                                                                                              \
}                                                                                                          \
int dw_input_grad_##SUF(const T *w, const T *g, T *gx, int64_t N, int64_t H, int64_t W, int64_t C,         \
                        int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t s, int64_t ph, int64_t pw, \
                        int64_t d) {                                                                       \
  T *t = transposed_##SUF(w, 1, C, KH * KW, 0);                                                            \
  if (!t) return 1;                                                                                        \
  int err = dw_input_grad_taps_##SUF(t, g, gx, N, H, W, C, OH, OW, KH, KW, s, ph, pw, d);                  \
  free(t);                                                                                                 \
  return err;                                                                                              \
}                                                                                                          \
int dw_weight_grad_##SUF(const T *x, const T *g, T *gw, int64_t N, int64_t H, int64_t W, int64_t C,        \
                         int64_t OH, int64_t OW, int64_t KH, int64_t KW, int64_t s, int64_t ph, int64_t pw, \
                         int64_t d) {                                                                      \
  const int64_t K = KH * KW;                                                                               \
  T *t = malloc(sizeof(T) * K * C);                                                                        \
  if (!t) return 1;                                                                                        \
  int err = dw_weight_grad_taps_##SUF(x, g, t, N, H, W, C, OH, OW, KH, KW, s, ph, pw, d);                  \
  transpose_##SUF(t, gw, 1, K, C, 0);                                                                      \
  free(t);                                                                                                 \
  return err;                                                                                              \
}                                                                                                          \
/* transposed: w is (G, Ci, Co) already (an input gradient's weights are the forward's, so read) */        \
int pw_forward_##SUF(const T *x, const T *w, T *y, int64_t P, int64_t G, int64_t Ci, int64_t Co,           \
                     int64_t transposed) {                                                                 \
  if (transposed) return pw_forward_ci_co_##SUF(x, w, y, P, G, Ci, Co);                                    \
  T *t = transposed_##SUF(w, G, Co, Ci, 0);                                                                \
  if (!t) return 1;                                                                                        \
  int err = pw_forward_ci_co_##SUF(x, t, y, P, G, Ci, Co);                                                 \
  free(t);                                                                                                 \
  return err;                                                                                              \
}                                                                                                          \
int pw_weight_grad_##SUF(const T *x, const T *g, T *gw, int64_t P, int64_t G, int64_t Ci, int64_t Co) {    \
  T *t = malloc(sizeof(T) * G * Ci * Co);                                                                  \
  if (!t) return 1;                                                                                        \
  int err = pw_weight_grad_ci_co_##SUF(x, g, t, P, G, Ci, Co);                                             \
  transpose_##SUF(t, gw, G, Ci, Co, 0);                                                                    \
  free(t);                                                                                                 \
  return err;                                                                                              \
}

DEFINE_KERNELS(float, f32, int32_t)
DEFINE_KERNELS(double, f64, int64_t)
