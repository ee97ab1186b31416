#include "ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <new>

#include <omp.h>
#if defined(__AVX512F__) || defined(__AVX2__)
// gcc 12 reports its own _mm512_undefined_* placeholders inside max/min/round/convert/shift/
// unpack/shuffle as "(may be) used uninitialized" once they are inlined; the warning points into
// the header, so it is silenced for the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

// Every product here is a small matrix product C (+)= A * B whose output rows are vectorised
// along a tile dimension: the score tile is held transposed, S^T (keys x queries), so that the
// online-softmax state (running max and sum per query) lives in vector lanes and the row-max,
// exp and rescale steps are plain vector ops with no horizontal reductions. A is read through
// two strides, so K and V are consumed straight from qkv and tiles can be read transposed.
// The forward copies only q (transposed, once per tile); the backward packs q, k and dO once per
// head, which every one of the head's tile pairs then reuses.

namespace tg::cpu {
TG_CPU_ISA_BEGIN
namespace {

// ---- vector primitives ------------------------------------------------------------------------
// kLanes floats per vector, and how many vectors one register tile spans (NV) and how many rows
// (tile_rows<NV>): chosen so that accumulators + one B row + one broadcast fit the register file
// (32 zmm, 16 ymm) with at least 8 independent FMA chains to cover the FMA latency.
#if defined(__AVX512F__)
using Vec = __m512;
constexpr int64_t kLanes = 16;
constexpr int kMaxVectors = 4;
template <int NV> constexpr int tile_rows() { return NV >= 3 ? 6 : 8; }
inline Vec load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec splat(float x) { return _mm512_set1_ps(x); }
inline Vec zero() { return _mm512_setzero_ps(); }
inline Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline Vec sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
inline Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
inline Vec max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
inline Vec min(Vec a, Vec b) { return _mm512_min_ps(a, b); }
inline Vec round_nearest(Vec x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// 2^n for integral n in [-127, 127], built in the exponent field; n = -127 gives exactly 0.
inline Vec pow2(Vec n) {
  __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int64_t kLanes = 8;
constexpr int kMaxVectors = 2;
template <int NV> constexpr int tile_rows() { return NV >= 2 ? 6 : 8; }
inline Vec load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec splat(float x) { return _mm256_set1_ps(x); }
inline Vec zero() { return _mm256_setzero_ps(); }
inline Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline Vec sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
inline Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
inline Vec max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
inline Vec min(Vec a, Vec b) { return _mm256_min_ps(a, b); }
inline Vec round_nearest(Vec x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline Vec pow2(Vec n) {
  __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
#else
using Vec = float;
constexpr int64_t kLanes = 1;
constexpr int kMaxVectors = 4;
template <int NV> constexpr int tile_rows() { return 4; }
inline Vec load(const float* p) { return *p; }
inline void store(float* p, Vec v) { *p = v; }
inline Vec splat(float x) { return x; }
inline Vec zero() { return 0.0f; }
inline Vec fmadd(Vec a, Vec b, Vec c) { return a * b + c; }
inline Vec add(Vec a, Vec b) { return a + b; }
inline Vec sub(Vec a, Vec b) { return a - b; }
inline Vec mul(Vec a, Vec b) { return a * b; }
inline Vec max(Vec a, Vec b) { return std::isnan(b) || b > a ? b : a; }
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
// exp(x), Cephes expf: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-7 polynomial (about
// 1 ulp), 2^n in the exponent field. Below -127 ln2 it returns exactly 0, so a masked score
// (-inf) gets probability 0, not a denormal that a later change to a masked key could disturb.
// x is the second operand of min/max because those return the second one on NaN: a NaN score
// stays NaN instead of becoming exp(88).
inline Vec exp_vec(Vec x) {
  x = max(splat(-88.02969193f), min(splat(88.0f), x));  // -88.0297 = -127 ln2
  Vec n = round_nearest(mul(x, splat(1.44269504088896341f)));
  Vec r = fmadd(n, splat(-0.693359375f), x);  // ln2 in two parts so that n*ln2 is exact enough
  r = fmadd(n, splat(2.12194440e-4f), r);
  Vec p = splat(1.9875691500e-4f);
  p = fmadd(p, r, splat(1.3981999507e-3f));
  p = fmadd(p, r, splat(8.3334519073e-3f));
  p = fmadd(p, r, splat(4.1665795894e-2f));
  p = fmadd(p, r, splat(1.6666665459e-1f));
  p = fmadd(p, r, splat(5.0000001201e-1f));
  p = fmadd(p, mul(r, r), add(r, splat(1.0f)));
  return mul(p, pow2(n));
}
#else
inline Vec exp_vec(Vec x) { return std::exp(x); }
#endif

// ---- small matrix product ---------------------------------------------------------------------

// One register tile: C (MR x NV*kLanes) = (or += with Accumulate) A (MR x k) * B (k x NV*kLanes),
// where A element (r, p) is a[r*a_row + p*a_col], B rows are ldb apart, C rows ldc apart; k >= 1.
// (Accumulate as a template argument and the do-while both matter: otherwise gcc 12 routes the
// accumulators through the stack on the way in.)
template <int MR, int NV, bool Accumulate>
inline void tile_product(int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                         float* c, int64_t ldc) {
  Vec acc[MR][NV];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = Accumulate ? load(c + r * ldc + v * kLanes) : zero();
  const float* a_end = a + k * a_col;
  do {
    Vec bv[NV];
    for (int v = 0; v < NV; v++) bv[v] = load(b + v * kLanes);
    for (int r = 0; r < MR; r++) {
      Vec av = splat(a[r * a_row]);
      for (int v = 0; v < NV; v++) acc[r][v] = fmadd(av, bv[v], acc[r][v]);
    }
    a += a_col;
    b += ldb;
  } while (a != a_end);
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) store(c + r * ldc + v * kLanes, acc[r][v]);
}

// The last rows % MR rows of a panel, with a tile of exactly that height.
template <int MR, int NV, bool Accumulate>
inline void tile_product_rows(int64_t rows, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                              int64_t ldb, float* c, int64_t ldc) {
  if constexpr (MR > 0) {
    if (rows == MR) tile_product<MR, NV, Accumulate>(k, a, a_row, a_col, b, ldb, c, ldc);
    else tile_product_rows<MR - 1, NV, Accumulate>(rows, k, a, a_row, a_col, b, ldb, c, ldc);
  }
}

template <int NV, bool Accumulate>
void panel_product(int64_t m, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                   float* c, int64_t ldc) {
  constexpr int MR = tile_rows<NV>();
  int64_t i = 0;
  for (; i + MR <= m; i += MR)
    tile_product<MR, NV, Accumulate>(k, a + i * a_row, a_row, a_col, b, ldb, c + i * ldc, ldc);
  if (i < m) tile_product_rows<MR - 1, NV, Accumulate>(m - i, k, a + i * a_row, a_row, a_col, b, ldb, c + i * ldc, ldc);
}

template <bool Accumulate>
void product_panels(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                    int64_t ldb, float* c, int64_t ldc) {
  for (int64_t j = 0; j < n;) {
    const int64_t vectors = std::min<int64_t>(kMaxVectors, (n - j) / kLanes);
    switch (vectors) {
      case 4: panel_product<4, Accumulate>(m, k, a, a_row, a_col, b + j, ldb, c + j, ldc); break;
      case 3: panel_product<3, Accumulate>(m, k, a, a_row, a_col, b + j, ldb, c + j, ldc); break;
      case 2: panel_product<2, Accumulate>(m, k, a, a_row, a_col, b + j, ldb, c + j, ldc); break;
      default: panel_product<1, Accumulate>(m, k, a, a_row, a_col, b + j, ldb, c + j, ldc); break;
    }
    j += vectors * kLanes;
  }
}

// C (m x n) = or += A (m x k) * B (k x n); n a multiple of kLanes. Sizes are tile-sized, so B's
// column panel (k x NV*kLanes) stays in L1 across all the row tiles that reuse it.
void small_product(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                   int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  if (k == 0) {  // an empty sum
    if (!accumulate)
      for (int64_t i = 0; i < m; i++) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  if (accumulate) product_panels<true>(m, n, k, a, a_row, a_col, b, ldb, c, ldc);
  else product_panels<false>(m, n, k, a, a_row, a_col, b, ldb, c, ldc);
}

// ---- transpose ----------------------------------------------------------------------------------

#if defined(__AVX512F__)
// dst[c * ld_dst + r] = src[r * ld_src + c] * factor for r, c < 16: 16 row loads, 64 in-register
// shuffles, 16 row stores, instead of 256 scalar loads and stores.
inline void transpose_16x16(float* dst, int64_t ld_dst, const float* src, int64_t ld_src, Vec factor) {
  Vec r[16], t[16];
  for (int i = 0; i < 16; i++) r[i] = mul(load(src + i * ld_src), factor);
  // In each 128-bit lane L: t[2k] = (r2k[4L], r2k+1[4L], r2k[4L+1], r2k+1[4L+1]), t[2k+1] the same for 4L+2, 4L+3.
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // r[4k + c], lane L: rows 4k..4k+3 of column 4L + c.
  for (int k = 0; k < 16; k += 4) {
    r[k] = _mm512_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  // Column 4L + c gathers lane L of r[c], r[4 + c], r[8 + c], r[12 + c].
  for (int c = 0; c < 4; c++) {
    Vec x0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), x1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xEE);
    Vec y0 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44), y1 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xEE);
    store(dst + c * ld_dst, _mm512_shuffle_f32x4(x0, y0, 0x88));
    store(dst + (4 + c) * ld_dst, _mm512_shuffle_f32x4(x0, y0, 0xDD));
    store(dst + (8 + c) * ld_dst, _mm512_shuffle_f32x4(x1, y1, 0x88));
    store(dst + (12 + c) * ld_dst, _mm512_shuffle_f32x4(x1, y1, 0xDD));
  }
}
#endif

// dst (cols x rows, rows ld_dst apart) = src (rows x cols, rows ld_src apart)^T * factor. The q
// tiles going in and the output tiles coming out are transposed, and these transposes cost as
// much as a third of a tile product when done one float at a time.
void transpose_scaled(float* dst, int64_t ld_dst, const float* src, int64_t ld_src, int64_t rows, int64_t cols,
                      float factor) {
  int64_t r0 = 0;
#if defined(__AVX512F__)
  for (; r0 + 16 <= rows; r0 += 16) {
    int64_t c0 = 0;
    for (; c0 + 16 <= cols; c0 += 16)
      transpose_16x16(dst + c0 * ld_dst + r0, ld_dst, src + r0 * ld_src + c0, ld_src, splat(factor));
    for (int64_t c = c0; c < cols; c++)
      for (int64_t r = r0; r < r0 + 16; r++) dst[c * ld_dst + r] = src[r * ld_src + c] * factor;
  }
#endif
  for (int64_t r = r0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) dst[c * ld_dst + r] = src[r * ld_src + c] * factor;
}

// ---- attention pieces -------------------------------------------------------------------------

// Queries per tile (the vectorised dimension of the S^T tile) and keys per tile. A 64 x 64 tile
// is 16 KB; with q^T and the output accumulator (HS x 64 each) the forward's working set is
// 48 KB at HS = 64, the size of L1 here, and each key/value row read from qkv serves 64 queries.
// (32 or 128 keys per tile measured no better; 128 queries per tile measured 10-20% slower.)
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kKeyBlock = 64;

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

// A row stride of at least `floats`, whole 64-byte lines, and an odd number of them: rows a
// power-of-two distance apart map to the same few L1 sets, and a 64-row panel read down such a
// column would evict itself; with an odd line count consecutive rows fall in distinct sets.
int64_t set_friendly_stride(int64_t floats) {
  int64_t lines = (floats + 15) / 16;
  return (lines % 2 ? lines : lines + 1) * 16;
}

// Scratch for every thread, allocated before the parallel region so that running out of memory
// is an exception the caller sees rather than a throw inside OpenMP (which terminates), and cut
// into 64-byte aligned arrays per thread.
class Scratch {
 public:
  // `arrays`: the length of each array a thread takes, in the order take() is called.
  Scratch(int threads, std::initializer_list<int64_t> arrays)
      : per_thread_(aligned_total(arrays)),
        data_(static_cast<float*>(std::aligned_alloc(64, threads * per_thread_ * sizeof(float)))) {
    if (!data_) throw std::bad_alloc();
  }
  ~Scratch() { std::free(data_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* thread_slice(int thread) const { return data_ + thread * per_thread_; }

  // Each array starts on a 64-byte boundary (see take()).
  static int64_t aligned_total(std::initializer_list<int64_t> arrays) {
    int64_t total = 16;
    for (int64_t floats : arrays) total += round_up(floats, 16);
    return total;
  }

 private:
  int64_t per_thread_;
  float* data_;
};

// Takes consecutive arrays from one thread's slice, each starting on a 64-byte boundary.
float* take(float*& cursor, int64_t floats) {
  float* array = cursor;
  cursor += round_up(floats, 16);
  return array;
}

// On the diagonal tile (keys and queries both start at the same time step) key j meets only
// queries >= j. In groups of kGroup keys by kGroup queries, key group g meets only query groups
// >= g, so the products skip the groups below the diagonal, whose probabilities are all 0: 3/8
// of the tile's work, which is most of the work when T spans one or two tiles.
constexpr int64_t kGroup = 16;
static_assert(kGroup % kLanes == 0 && kQueryBlock % kGroup == 0, "groups are whole vectors inside a tile");
static_assert(kQueryBlock == kKeyBlock, "tiles are square, so a tile meets the diagonal only at its own start");

// One S^T tile's extent: nk key rows, `width` query lanes (a whole number of vectors).
struct TileShape {
  int64_t nk, width;
  bool diagonal;
  // The first query lane whose score in key row j is computed and read (masked lanes of the
  // diagonal tile's own group are still computed: they are -inf, then 0).
  int64_t first_lane(int64_t j) const { return diagonal ? j / kGroup * kGroup : 0; }
  // The key rows computed and read for the vector of lanes starting at `lane`.
  int64_t key_rows(int64_t lane) const { return diagonal ? std::min(nk, (lane / kGroup + 1) * kGroup) : nk; }
  int64_t key_step() const { return diagonal ? kGroup : nk; }
  int64_t lane_step() const { return diagonal ? kGroup : width; }
};

// On the diagonal tile key j is visible to query i iff j <= i: in key row j the lanes from j's
// group up to j are queries that precede the key, and their scores become -inf, hence
// probability exactly 0. (Lanes before j's group are never computed nor read.)
void mask_future_keys(const TileShape& t, float* s) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < t.nk; j++) std::fill(s + j * t.width + t.first_lane(j), s + j * t.width + j, minus_inf);
}

// tile (nk x width) = A (nk x HS, rows a_row apart) * B (HS x width, rows ldb apart): S^T = K q^T
// and dP^T = V dO^T, with K and V read in place.
void keys_times_queries(const TileShape& t, const float* a, int64_t a_row, const float* b, int64_t ldb, int64_t HS,
                        float* tile) {
  for (int64_t j = 0; j < t.nk; j += t.key_step()) {
    const int64_t rows = std::min(t.key_step(), t.nk - j), lane = t.first_lane(j);
    small_product(rows, t.width - lane, HS, a + j * a_row, a_row, 1, b + lane, ldb, tile + j * t.width + lane, t.width,
                  false);
  }
}

// ot (HS x width) += V^T (HS x nk) * tile (nk x width), V's rows v_row apart: O^T += V^T P^T.
void add_values_times_tile(const TileShape& t, const float* v, int64_t v_row, int64_t HS, const float* tile,
                           float* ot) {
  for (int64_t j = 0; j < t.nk; j += t.key_step()) {
    const int64_t rows = std::min(t.key_step(), t.nk - j), lane = t.first_lane(j);
    small_product(HS, t.width - lane, rows, v + j * v_row, 1, v_row, tile + j * t.width + lane, t.width, ot + lane,
                  t.width, true);
  }
}

// c (nk x n) += tile (nk x width) * B (width x n), B's rows the tile's queries: dV += P^T dO and
// dK += dS^T q.
void add_tile_times_queries(const TileShape& t, const float* tile, const float* b, int64_t n, float* c) {
  for (int64_t j = 0; j < t.nk; j += t.key_step()) {
    const int64_t rows = std::min(t.key_step(), t.nk - j), lane = t.first_lane(j);
    small_product(rows, n, t.width - lane, tile + j * t.width + lane, t.width, 1, b + lane * n, n, c + j * n, n, true);
  }
}

// c (width x n) += tile^T (width x nk) * B (nk x n), B's rows the tile's keys: dQ += dS K.
void add_tile_transposed_times_keys(const TileShape& t, const float* tile, const float* b, int64_t n, float* c) {
  for (int64_t i = 0; i < t.width; i += t.lane_step()) {
    const int64_t lanes = std::min(t.lane_step(), t.width - i);
    small_product(lanes, n, t.key_rows(i), tile + i, 1, t.width, b, n, c + i * n, n, true);
  }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* qkv, int64_t B, int64_t T, int64_t C, int64_t NH) {
  if (B * T * C == 0) return;
  const int64_t HS = C / NH, row = 3 * C;  // row: distance between consecutive time steps in qkv
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const int64_t query_blocks = (T + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = B * NH * query_blocks;
  const int threads = omp_get_max_threads();
  const int64_t tile_floats = kKeyBlock * kQueryBlock, head_tile = HS * kQueryBlock;
  Scratch scratch(threads, {head_tile, head_tile, tile_floats, kQueryBlock, kQueryBlock, kQueryBlock});
#pragma omp parallel num_threads(threads)
  {
    float* cursor = scratch.thread_slice(omp_get_thread_num());
    float* qt = take(cursor, HS * kQueryBlock);  // q^T tile (HS x width)
    float* ot = take(cursor, HS * kQueryBlock);  // output accumulator, transposed (HS x width)
    float* s = take(cursor, tile_floats);        // S^T, then P^T (keys x width)
    float* run_max = take(cursor, kQueryBlock);
    float* run_sum = take(cursor, kQueryBlock);
    float* alpha = take(cursor, kQueryBlock);
    // Tiles near the end of the sequence see the most keys; dynamic scheduling with those first
    // (the query block index runs backwards) balances the triangle across threads.
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; task++) {
      const int64_t bh = task / query_blocks, b = bh / NH, h = bh % NH;
      const int64_t i0 = (query_blocks - 1 - task % query_blocks) * kQueryBlock;
      const int64_t nq = std::min(kQueryBlock, T - i0), width = round_up(nq, kLanes);
      const float* q = qkv + b * T * row + h * HS;
      const float* k = q + C;
      const float* v = q + 2 * C;

      // q^T with the 1/sqrt(HS) folded in; padded lanes are zero and stay finite throughout.
      transpose_scaled(qt, width, q + i0 * row, row, nq, HS, scale);
      for (int64_t d = 0; d < HS; d++) std::fill(qt + d * width + nq, qt + (d + 1) * width, 0.0f);
      std::fill(run_max, run_max + width, -std::numeric_limits<float>::infinity());
      std::fill(run_sum, run_sum + width, 0.0f);
      std::fill(ot, ot + HS * width, 0.0f);

      // Key blocks up to the diagonal only; keys past the tile's last query are skipped.
      for (int64_t j0 = 0; j0 < i0 + nq; j0 += kKeyBlock) {
        const int64_t nk = std::min(kKeyBlock, i0 + nq - j0);
        const TileShape tile{nk, width, j0 == i0};
        keys_times_queries(tile, k + j0 * row, row, qt, width, HS, s);  // S^T = K q^T
        if (tile.diagonal) mask_future_keys(tile, s);

        // Online softmax per query lane: the new running max rescales the old sum and output.
        // Key 0 is visible to every query, so after the first block every lane's max is finite.
        for (int64_t i = 0; i < width; i += kLanes) {
          const int64_t rows = tile.key_rows(i);
          Vec old_max = load(run_max + i), new_max = old_max;
          for (int64_t j = 0; j < rows; j++) new_max = max(new_max, load(s + j * width + i));
          Vec sum = zero();
          for (int64_t j = 0; j < rows; j++) {
            Vec p = exp_vec(sub(load(s + j * width + i), new_max));
            store(s + j * width + i, p);
            sum = add(sum, p);
          }
          Vec rescale = exp_vec(sub(old_max, new_max));  // exp(-inf) = 0 on the first block
          store(alpha + i, rescale);
          store(run_sum + i, fmadd(load(run_sum + i), rescale, sum));
          store(run_max + i, new_max);
        }
        for (int64_t d = 0; d < HS; d++)
          for (int64_t i = 0; i < width; i += kLanes)
            store(ot + d * width + i, mul(load(ot + d * width + i), load(alpha + i)));
        add_values_times_tile(tile, v + j0 * row, row, HS, s, ot);  // O^T += V^T P^T
      }

      // out = O / sum, normalised in the transposed tile (a vector per row of O^T), then turned.
      for (int64_t i = 0; i < width; i++) alpha[i] = 1.0f / run_sum[i];
      for (int64_t d = 0; d < HS; d++)
        for (int64_t i = 0; i < width; i += kLanes)
          store(ot + d * width + i, mul(load(ot + d * width + i), load(alpha + i)));
      transpose_scaled(out + (b * T + i0) * C + h * HS, C, ot, width, HS, nq, 1.0f);
      float* l = lse + bh * T + i0;
      for (int64_t i = 0; i < nq; i++) l[i] = run_max[i] + std::log(run_sum[i]);
    }
  }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                        int64_t B, int64_t T, int64_t C, int64_t NH) {
  if (B * T * C == 0) return;
  const int64_t HS = C / NH, row = 3 * C;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HS));
  const int64_t padded_T = round_up(T, kLanes), padded_HS = round_up(HS, kLanes);
  const int64_t ld_t = set_friendly_stride(padded_T);  // row stride of the transposed (HS x T) packs
  // One (b, h) per task: its dK and dV accumulate over all query blocks and its dQ over all key
  // blocks inside the task, so no two threads ever write the same gradient element, and the
  // summation order (hence every bit of the result) does not depend on the thread count.
  const int threads = omp_get_max_threads();
  const int64_t packed = padded_T * padded_HS, tile_floats = kKeyBlock * kQueryBlock;
  const int64_t key_rows = kKeyBlock * padded_HS;
  Scratch scratch(threads, {HS * ld_t, HS * ld_t, packed, packed, packed, packed, padded_T, padded_T, tile_floats,
                            tile_floats, key_rows, key_rows});
#pragma omp parallel num_threads(threads)
  {
    // Per head, packed once and reused by every tile pair: q (scaled) and dO both transposed
    // (B operands of the query-vectorised S^T and dP^T tiles) and row-major with HS padded to
    // whole vectors (B operands of the HS-vectorised dK, dV, dQ products), and k row-major, padded.
    float* cursor = scratch.thread_slice(omp_get_thread_num());
    float* qt = take(cursor, HS * ld_t);
    float* dot = take(cursor, HS * ld_t);
    float* qp = take(cursor, packed);
    float* dop = take(cursor, packed);
    float* kp = take(cursor, packed);
    float* dq = take(cursor, packed);  // dQ accumulator for the whole head
    float* lse_h = take(cursor, padded_T);
    float* delta = take(cursor, padded_T);
    float* s = take(cursor, tile_floats);   // S^T, then P^T
    float* ds = take(cursor, tile_floats);  // dP^T, then dS^T
    float* dk = take(cursor, key_rows);
    float* dv = take(cursor, key_rows);

#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * NH; bh++) {
      const int64_t b = bh / NH, h = bh % NH;
      const float* q = qkv + b * T * row + h * HS;
      const float* k = q + C;
      const float* v = q + 2 * C;
      const float* go = dout + b * T * C + h * HS;
      const float* o = out + b * T * C + h * HS;

      // Padding (time steps T..padded_T, columns HS..padded_HS) is zero, and the padded queries'
      // lse is +inf so their probabilities are exactly 0 and they contribute nothing.
      std::fill(qp, qp + padded_T * padded_HS, 0.0f);
      std::fill(dop, dop + padded_T * padded_HS, 0.0f);
      std::fill(kp, kp + padded_T * padded_HS, 0.0f);
      std::fill(dq, dq + padded_T * padded_HS, 0.0f);
      for (int64_t i = 0; i < T; i++) {
        float dot_product = 0.0f;  // D_i = dO_i . O_i = sum_j P_ij dP_ij, the softmax backward's row term
        for (int64_t d = 0; d < HS; d++) {
          const float g = go[i * C + d];
          qp[i * padded_HS + d] = q[i * row + d] * scale;
          dop[i * padded_HS + d] = g;
          kp[i * padded_HS + d] = k[i * row + d];
          dot_product += g * o[i * C + d];
        }
        delta[i] = dot_product;
        lse_h[i] = lse[bh * T + i];
      }
      for (int64_t i = T; i < padded_T; i++) {
        delta[i] = 0.0f;
        lse_h[i] = std::numeric_limits<float>::infinity();
      }
      transpose_scaled(qt, ld_t, qp, padded_HS, padded_T, HS, 1.0f);
      transpose_scaled(dot, ld_t, dop, padded_HS, padded_T, HS, 1.0f);

      for (int64_t j0 = 0; j0 < T; j0 += kKeyBlock) {
        const int64_t nk = std::min(kKeyBlock, T - j0);
        std::fill(dk, dk + nk * padded_HS, 0.0f);
        std::fill(dv, dv + nk * padded_HS, 0.0f);
        // Query blocks from the diagonal on: earlier queries cannot see these keys.
        for (int64_t i0 = j0 / kQueryBlock * kQueryBlock; i0 < T; i0 += kQueryBlock) {
          const TileShape tile{nk, round_up(std::min(kQueryBlock, T - i0), kLanes), j0 == i0};
          const int64_t width = tile.width;
          keys_times_queries(tile, k + j0 * row, row, qt + i0, ld_t, HS, s);  // S^T
          if (tile.diagonal) mask_future_keys(tile, s);
          for (int64_t j = 0; j < nk; j++)  // P^T = exp(S^T - lse), the forward's probabilities
            for (int64_t i = tile.first_lane(j); i < width; i += kLanes)
              store(s + j * width + i, exp_vec(sub(load(s + j * width + i), load(lse_h + i0 + i))));
          keys_times_queries(tile, v + j0 * row, row, dot + i0, ld_t, HS, ds);  // dP^T = V dO^T
          add_tile_times_queries(tile, s, dop + i0 * padded_HS, padded_HS, dv);  // dV += P^T dO
          for (int64_t j = 0; j < nk; j++)  // dS^T = P^T * (dP^T - D)
            for (int64_t i = tile.first_lane(j); i < width; i += kLanes) {
              Vec p = load(s + j * width + i);
              store(ds + j * width + i, mul(p, sub(load(ds + j * width + i), load(delta + i0 + i))));
            }
          // q was pre-scaled, so this is already dK = scale * dS^T q.
          add_tile_times_queries(tile, ds, qp + i0 * padded_HS, padded_HS, dk);
          // dQ += dS K, reading the dS^T tile transposed; scaled once at the end.
          add_tile_transposed_times_keys(tile, ds, kp + j0 * padded_HS, padded_HS, dq + i0 * padded_HS);
        }
        float* gk = dqkv + (b * T + j0) * row + C + h * HS;
        float* gv = gk + C;
        for (int64_t j = 0; j < nk; j++)
          for (int64_t d = 0; d < HS; d++) {
            gk[j * row + d] += dk[j * padded_HS + d];
            gv[j * row + d] += dv[j * padded_HS + d];
          }
      }
      float* gq = dqkv + b * T * row + h * HS;
      for (int64_t i = 0; i < T; i++)
        for (int64_t d = 0; d < HS; d++) gq[i * row + d] += scale * dq[i * padded_HS + d];
    }
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
