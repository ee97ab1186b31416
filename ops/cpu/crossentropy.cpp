#include "ops/cpu/crossentropy.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <limits>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

static constexpr int64_t kParallelMinElements = 1 << 15;
// A row is processed in blocks of this many logits (1 KB): each block's max is taken as it streams
// in from memory, then its exps are summed from L1 in f32 vector lanes and added into a double (so
// a 50k-wide row loses no more precision than a short one). The block is small enough that the
// exp pass (~20 instructions a vector) fits in the out-of-order window, so the next block's loads
// issue while it runs: 4 KB blocks measured 1.5x slower on one core, 64 to 512 about the same.
static constexpr int64_t kSumBlock = 256;
// The loss is summed over this many fixed row chunks (fewer when N is smaller), in order.
static constexpr int64_t kLossChunks = 64;

// ---- a float vector of the widest kind this build has -----------------------------------------
// exp(x) = 2^n * exp(r) with n = round(x / ln 2) and r = x - n ln 2 in [-ln2/2, ln2/2]; ln 2 is split
// in two (Cody-Waite) so that n ln 2 is exact in the first part; exp(r) is the Cephes expf
// polynomial (about 1 ulp on that interval). x is clamped to [-104, 89], past which the f32 result is
// 0 or inf anyway; the clamp keeps a NaN x because max/min return their second operand on NaN.
static constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
static constexpr float kExpLow = -104.0f, kExpHigh = 89.0f;
static constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                       kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

#if defined(__AVX512F__)
// gcc 12 warns (-Wmaybe-uninitialized) inside the plain max/min/roundscale/scalef intrinsics, which
// start from _mm512_undefined_ps(); their zero-masked forms with every lane selected are the same
// instructions without it.
static constexpr __mmask16 kAllLanes = 0xFFFF;
struct Vec {
  static constexpr int kWidth = 16;
  __m512 v;
  static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Vec set(float x) { return {_mm512_set1_ps(x)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  // The first `count` (< kWidth) lanes from p, the rest `fill`; masked lanes touch no memory.
  static Vec load_partial(const float* p, int64_t count, float fill) {
    return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), static_cast<__mmask16>((1u << count) - 1), p)};
  }
  void store_partial(float* p, int64_t count) const {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << count) - 1), v);
  }
};
static inline Vec operator+(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
static inline Vec operator-(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
static inline Vec operator*(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
static inline Vec max(Vec a, Vec b) { return {_mm512_maskz_max_ps(kAllLanes, a.v, b.v)}; }
static inline Vec exp(Vec x) {
  __m512 t = _mm512_maskz_min_ps(kAllLanes, _mm512_set1_ps(kExpHigh),
                                 _mm512_maskz_max_ps(kAllLanes, _mm512_set1_ps(kExpLow), x.v));
  __m512 n = _mm512_maskz_roundscale_ps(kAllLanes, _mm512_mul_ps(t, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), t);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  // scalef computes y * 2^n in one rounding, through the subnormals and into 0 or inf.
  return {_mm512_maskz_scalef_ps(kAllLanes, y, n)};
}
#elif defined(__AVX2__)
struct Vec {
  static constexpr int kWidth = 8;
  __m256 v;
  static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static Vec set(float x) { return {_mm256_set1_ps(x)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  static __m256i first_lanes(int64_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  // The first `count` (< kWidth) lanes from p, the rest `fill`; masked lanes touch no memory.
  static Vec load_partial(const float* p, int64_t count, float fill) {
    __m256i mask = first_lanes(count);
    return {_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, mask), _mm256_castsi256_ps(mask))};
  }
  void store_partial(float* p, int64_t count) const { _mm256_maskstore_ps(p, first_lanes(count), v); }
};
static inline Vec operator+(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
static inline Vec operator-(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
static inline Vec operator*(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
static inline Vec max(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
static inline Vec exp(Vec x) {
  __m256 t = _mm256_min_ps(_mm256_set1_ps(kExpHigh), _mm256_max_ps(_mm256_set1_ps(kExpLow), x.v));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), t);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  // n is in [-150, 128], past the exponent field's range: scale by 2^(n/2) and 2^(n - n/2), each a
  // normal float, so that only the last multiply rounds (into the subnormals near the bottom).
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i half = _mm256_srai_epi32(ni, 1), rest = _mm256_sub_epi32(ni, half);
  __m256 scale_half = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  __m256 scale_rest = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, _mm256_set1_epi32(127)), 23));
  return {_mm256_mul_ps(_mm256_mul_ps(y, scale_half), scale_rest)};
}
#else
struct Vec {
  static constexpr int kWidth = 1;
  float v;
  static Vec load(const float* p) { return {*p}; }
  static Vec set(float x) { return {x}; }
  void store(float* p) const { *p = v; }
  // One lane: a partial vector is never needed, but the shared code must compile.
  static Vec load_partial(const float* p, int64_t count, float fill) { return {count > 0 ? *p : fill}; }
  void store_partial(float* p, int64_t count) const {
    if (count > 0) *p = v;
  }
};
static inline Vec operator+(Vec a, Vec b) { return {a.v + b.v}; }
static inline Vec operator-(Vec a, Vec b) { return {a.v - b.v}; }
static inline Vec operator*(Vec a, Vec b) { return {a.v * b.v}; }
static inline Vec max(Vec a, Vec b) { return {std::isnan(b.v) ? b.v : std::max(a.v, b.v)}; }
static inline Vec exp(Vec x) { return {std::exp(x.v)}; }
#endif

static constexpr int64_t kWidth = Vec::kWidth;
static constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// Horizontal max and sum of the lanes, as a fixed tree (the same bits every run).
#if defined(__AVX512F__) || defined(__AVX2__)
static inline float reduce_max_128(__m128 m) {
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
static inline float reduce_add_128(__m128 s) {
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
static inline __m128 high_128(__m256 v) { return _mm256_extractf128_ps(v, 1); }
#endif
#if defined(__AVX512F__)
// Half `h` of a 512-bit vector (gcc 12's plain extract and cast start from an undefined value and
// warn, as above).
static inline __m256 half_256(__m512 v, int h) {
  return _mm256_castpd_ps(h ? _mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 1)
                            : _mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 0));
}
static inline float reduce_max(Vec a) {
  __m256 m = _mm256_max_ps(half_256(a.v, 0), half_256(a.v, 1));
  return reduce_max_128(_mm_max_ps(_mm256_castps256_ps128(m), high_128(m)));
}
static inline float reduce_add(Vec a) {
  __m256 s = _mm256_add_ps(half_256(a.v, 0), half_256(a.v, 1));
  return reduce_add_128(_mm_add_ps(_mm256_castps256_ps128(s), high_128(s)));
}
#elif defined(__AVX2__)
static inline float reduce_max(Vec a) { return reduce_max_128(_mm_max_ps(_mm256_castps256_ps128(a.v), high_128(a.v))); }
static inline float reduce_add(Vec a) { return reduce_add_128(_mm_add_ps(_mm256_castps256_ps128(a.v), high_128(a.v))); }
#else
static inline float reduce_max(Vec a) { return a.v; }
static inline float reduce_add(Vec a) { return a.v; }
#endif

// The last `count` (< kWidth) elements of a row, padded with -inf: nothing to a max, exp(-inf) = 0
// to a sum, so the tail goes through the same vector code (and the same exp) as the rest.
static inline Vec load_tail(const float* p, int64_t count) { return Vec::load_partial(p, count, kMinusInf); }

// in (n) -> out (n)
void vector_exp(float* out, const float* in, int64_t n) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) exp(Vec::load(in + i)).store(out + i);
  if (i < n) exp(load_tail(in + i, n - i)).store_partial(out + i, n - i);
}

// One row of V logits: its max m and log(sum(exp(x - m))), the log-sum-exp being m + that. The max
// shift keeps every exp <= 1, so no row overflows however large its logits. sum: the logits' own sum,
// which label smoothing needs (taken only when asked for).
struct RowLogSumExp {
  float max;
  double log_sum;
  double sum;
};

// One pass over the row from memory: each block's max is found while the block streams in, then
// its exps are summed while it is still in L1 (a max pass over the whole row first would leave the
// exp pass waiting for memory and then memory idle). A block whose max exceeds the running one
// rescales the running sum once, in double. kSum: also sum the logits, in the max loop (f32 lanes
// per block, the blocks in double).
template <bool kSum>
static RowLogSumExp row_logsumexp(const float* x, int64_t V) {
  float m = kMinusInf;
  double total = 0.0, logit_sum = 0.0;
  for (int64_t block = 0; block < V; block += kSumBlock) {
    const int64_t end = std::min(V, block + kSumBlock);
    Vec vmax = Vec::set(kMinusInf), vsum = Vec::set(0.0f);
    int64_t i = block;
    for (; i + kWidth <= end; i += kWidth) {
      const Vec v = Vec::load(x + i);
      vmax = max(vmax, v);
      if (kSum) vsum = vsum + v;
    }
    if (i < end) {
      vmax = max(vmax, load_tail(x + i, end - i));
      if (kSum) vsum = vsum + Vec::load_partial(x + i, end - i, 0.0f);
    }
    if (kSum) logit_sum += reduce_add(vsum);
    const float block_max = reduce_max(vmax);
    if (block_max > m) {
      if (total > 0.0) total *= std::exp(static_cast<double>(m) - static_cast<double>(block_max));
      m = block_max;
    }
    // While every logit so far is -inf, shift by 0: exp(-inf) = 0 adds nothing, a NaN stays NaN.
    const Vec shift = Vec::set(m == kMinusInf ? 0.0f : m);
    Vec sum = Vec::set(0.0f);
    for (i = block; i + kWidth <= end; i += kWidth) sum = sum + exp(Vec::load(x + i) - shift);
    if (i < end) sum = sum + exp(load_tail(x + i, end - i) - shift);
    total += reduce_add(sum);
  }
  return {m, std::log(total), logit_sum};
}

// logits (N,V), targets (N) -> loss (1), lse (N)
void crossentropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                          int32_t ignore_index, float label_smoothing) {
  // Each row's loss is (m - logit[target]) + log_sum in double: the difference of two f32 numbers is
  // exact there, so logits of 1e4 lose nothing to the f32 rounding of their lse (1e-3 at 1e4). With
  // smoothing e it is (1 - e) (m - logit[target]) + e (m - mean(logits)) + log_sum, since
  // -mean(log p) = lse - mean(logits). Rows are summed within fixed chunks in row order, then the
  // chunks in order: the same loss whatever the thread count.
  const bool smooth = label_smoothing != 0.0f;
  const double e = label_smoothing;
  const int64_t chunks = std::max<int64_t>(1, std::min(N, kLossChunks));
  double chunk_loss[kLossChunks] = {};
  int64_t chunk_count[kLossChunks] = {};
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinElements)
  for (int64_t k = 0; k < chunks; k++) {
    double sum = 0.0;  // local, so that threads do not share the cache line of chunk_loss per row
    int64_t rows = 0;
    for (int64_t n = k * N / chunks; n < (k + 1) * N / chunks; n++) {
      if (targets[n] == ignore_index) {
        lse[n] = 0.0f;  // never read: the backward skips ignored rows too
        continue;
      }
      const float* x = logits + n * V;
      RowLogSumExp row = smooth ? row_logsumexp<true>(x, V) : row_logsumexp<false>(x, V);
      lse[n] = static_cast<float>(static_cast<double>(row.max) + row.log_sum);
      const double nll_shifted = static_cast<double>(row.max) - static_cast<double>(x[targets[n]]);
      if (smooth)
        sum += (1.0 - e) * nll_shifted + e * (static_cast<double>(row.max) - row.sum / static_cast<double>(V)) +
               row.log_sum;
      else
        sum += nll_shifted + row.log_sum;
      rows++;
    }
    chunk_loss[k] = sum;
    chunk_count[k] = rows;
  }
  double total = 0.0;
  int64_t count = 0;
  for (int64_t k = 0; k < chunks; k++) {
    total += chunk_loss[k];
    count += chunk_count[k];
  }
  // Every row ignored: 0, where PyTorch gives 0/0 = nan. A batch that is all padding carries no
  // signal, and a nan here would trip the trainer's non-finite-loss stop for no fault of the model.
  *loss = count ? static_cast<float>(total / static_cast<double>(count)) : 0.0f;
}

// dlogits (N,V) += (softmax - (1 - e) onehot - e / V) * dloss / count, from logits (N,V), targets (N),
// lse (N)
void crossentropy_backward(float* dlogits, const float* dloss, const float* logits, const int32_t* targets,
                           const float* lse, int64_t N, int64_t V, int32_t ignore_index, float label_smoothing) {
  int64_t count = 0;
  for (int64_t n = 0; n < N; n++) count += targets[n] != ignore_index;
  if (count == 0) return;
  const float scale = *dloss / static_cast<float>(count);
  // Subtracting 0 changes no bits, so without smoothing this is the plain softmax - onehot.
  const float uniform_share = label_smoothing / static_cast<float>(V) * scale;
  const float target_share = (1.0f - label_smoothing) * scale;
  // One pass per row: softmax = exp(logits - lse) is recomputed rather than read back, since
  // storing it would cost a write and a read of N x V floats.
#pragma omp parallel for schedule(static) if (N * V >= kParallelMinElements)
  for (int64_t n = 0; n < N; n++) {
    const int32_t target = targets[n];
    if (target == ignore_index) continue;
    const float* x = logits + n * V;
    float* d = dlogits + n * V;
    const Vec vlse = Vec::set(lse[n]), vscale = Vec::set(scale), vuniform = Vec::set(uniform_share);
    int64_t i = 0;
    for (; i + kWidth <= V; i += kWidth)
      (Vec::load(d + i) + exp(Vec::load(x + i) - vlse) * vscale - vuniform).store(d + i);
    if (i < V)
      (Vec::load_partial(d + i, V - i, 0.0f) + exp(load_tail(x + i, V - i) - vlse) * vscale - vuniform)
          .store_partial(d + i, V - i);
    d[target] -= target_share;
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
