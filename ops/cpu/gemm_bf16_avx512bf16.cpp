// bf16 GEMM on AVX512_BF16: the f32 GEMM's BLIS loop nest (ops/cpu/gemm.cpp, read its header
// comment first) with vdpbf16ps in the micro-kernel. vdpbf16ps multiplies 32 bf16 pairs and adds
// each 32-bit lane's two products into an f32 accumulator:
//
//   acc.f32[j] += a.bf16[2j] * b.bf16[2j] + a.bf16[2j+1] * b.bf16[2j+1]
//
// so one instruction advances 16 columns of C by two k. The packers therefore pair k: a B sliver
// is (kp, NR, 2), column j's values at k = 2q and 2q+1 side by side, and an A sliver is (kp, MR, 2),
// whose 32-bit pair (row r, pair q) the kernel broadcasts to all lanes. kp = ceil(k/2); an odd k
// pads its last pair with a zero, which adds nothing.
//
// Rounding: every bf16 x bf16 product is exact in f32, and each is added to the f32 accumulator
// with one rounding (the instruction is two chained adds), so the error bound is the f32 GEMM's,
// but for one thing: vdpbf16ps takes subnormal inputs as zero and flushes subnormal sums to zero
// (measured on Zen 5, as Intel documents it), which adds an absolute error below 2^-126 per k.
// A bf16 C is rounded once, on store, with the same round-to-nearest-even as tg::f32_to_bf16
// (vcvtne2ps2bf16, which rounds so, except that it flushes a subnormal value: a tile row holding
// one takes the integer-SIMD rounding instead). When K spans several
// KC blocks a bf16 C cannot hold the partial sums, so they go to an f32 scratch tile instead and
// only the last block rounds (a chunk of the block's rows at a time, which bounds the scratch).
#include "ops/cpu/gemm_bf16_avx512bf16.h"

#include "ops/cpu/avx512_transpose.h"
#include "tensor/dtype.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace tg::cpu {

namespace {

constexpr int kMR = kGemmBf16MR, kNR = kGemmBf16NR;

// Cache blocks: the f32 GEMM's byte budgets (measured on Zen 5, see gemm.cpp) at half the bytes
// per element, so KC doubles: A block MC*KC*2 = 336 KiB in L2, B sliver KC*NR*2 = 96 KiB, B panel
// KC*NC*2 = 6 MiB in L3. KC is even so that only a GEMM's last K block can end in a padded pair.
#ifndef TG_GEMM_BF16_KC
#define TG_GEMM_BF16_KC 1536
#endif
#ifndef TG_GEMM_BF16_MC
#define TG_GEMM_BF16_MC (kMR * 8)
#endif
#ifndef TG_GEMM_BF16_NC
#define TG_GEMM_BF16_NC 2048
#endif
constexpr int64_t kKC = TG_GEMM_BF16_KC, kMC = TG_GEMM_BF16_MC, kNC = TG_GEMM_BF16_NC;
static_assert(kKC % 2 == 0, "K blocks must hold whole k pairs");
static_assert(kMC % kMR == 0 && kNC % kNR == 0, "cache blocks must hold whole register tiles");
// The f32 scratch of a bf16 C with K > KC covers as many rows of the block as fit in 4 MiB (at
// least one A block): B is packed again for every such chunk of rows, so the chunk is as tall as
// the budget allows (the weight gradients' narrow C, N = 384, fits 2688 rows; 2048 columns 448).
constexpr int64_t kPartialBytes = int64_t(4) << 20;
int64_t partial_rows(int64_t nc) { return std::max<int64_t>(kMC, kPartialBytes / (4 * nc) / kMC * kMC); }

// Intrinsics below use the maskz forms with this all-ones mask, which compile to the plain
// instructions; the plain intrinsics trip gcc 12's -Wuninitialized through their undefined
// pass-through operand (as in gemm.cpp).
constexpr __mmask16 kAll = 0xffff;
// The low n bits set (none for n <= 0, all for n past the width).
inline __mmask32 mask32(int64_t n) { return n <= 0 ? 0u : n >= 32 ? 0xffffffffu : (1u << n) - 1u; }
inline __mmask16 mask16(int64_t n) { return static_cast<__mmask16>(n <= 0 ? 0u : n >= 16 ? 0xffffu : (1u << n) - 1u); }

// ---- packing ----------------------------------------------------------------------------------

// transpose16x16 (avx512_transpose.h) moves bf16 pairs as the 32-bit elements they pack into.
//
// The packed slivers of a block lie kSliverPad elements (64 bytes) further apart than their size:
// a sliver of kp pairs is 56 kp (A) or 128 kp (B) bytes, at the K block's kp = 768 a multiple of
// 2 KiB (A) or 4 KiB (B), and the down-columns packer stores into every sliver of a block in
// turn, stores that would otherwise fall in the same few L1 sets. The pad also takes the spill
// below.
constexpr int64_t kSliverPad = 32;
constexpr int64_t a_sliver_size(int64_t kp) { return kMR * 2 * kp + kSliverPad; }
constexpr int64_t b_sliver_size(int64_t kp) { return kNR * 2 * kp + kSliverPad; }

// The packers store whole 64-byte vectors, even where a slot is narrower (an A slot holds 14
// pairs, 56 bytes): the lanes past the slot land on the start of the next slot, which is stored
// after it, or, after a sliver's last slot, on its pad. Masked stores would write only the slot,
// but on Zen 5 a masked store that crosses a cache line (every other 56-byte slot) is several
// times slower than a plain one.

// Operand stored with k running along its rows (A as (M,K), B as (N,K): the Linear weight).
// `rows` (<= 16) rows of k bf16 each, row stride ld -> dst[q * dst_stride + r] = the pair
// (src[r][2q], src[r][2q+1]) as one 32-bit element, for q < ceil(k/2) and r < 16. Rows past
// `rows` and the odd k's missing partner are zeros. 16 pairs of 16 rows per transpose; the masked
// loads never read past a row's k elements.
void pack_k_along_rows(const uint16_t* src, int64_t ld, int rows, int64_t k, uint32_t* dst, int64_t dst_stride) {
  const int64_t kp = (k + 1) / 2;
  __m512 v[16];
  for (int64_t q0 = 0; q0 < kp; q0 += 16) {
    const __mmask32 load = mask32(k - 2 * q0);
    // The next sliver's rows (the next 16 up; past the block they are the next block's): the
    // loads below wait on memory otherwise, 14 or 16 rows being too many streams for the
    // hardware prefetcher. Packing an A block took as long as multiplying it at lm_head's N = 65.
    for (int r = 0; r < rows; r++) _mm_prefetch(reinterpret_cast<const char*>(src + (r + rows) * ld + 2 * q0), _MM_HINT_T0);
    for (int r = 0; r < 16; r++)
      v[r] = r < rows ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(load, src + r * ld + 2 * q0))
                      : _mm512_setzero_ps();
    transpose16x16(v);
    const int64_t count = std::min<int64_t>(16, kp - q0);
    for (int64_t j = 0; j < count; j++) _mm512_storeu_si512(dst + (q0 + j) * dst_stride, _mm512_castps_si512(v[j]));
  }
}

// How far ahead pack_k_down_columns fetches rows, in k pairs (see there).
constexpr int64_t kPrefetchPairs = 8;

// Operand stored with k running down its columns (A as (K,M), B as (K,N)): n columns in slivers
// of `width` (14 or 32) columns, `sliver_size` elements apart from dst. Stored rows 2q and 2q+1
// interleave into sliver s at dst[s * sliver_size + q * 2 * width + 2j + t] = src[2q+t][s * width
// + j] for j < width; columns past n and the odd k's missing row are zeros. The pair loop is
// outside the sliver loop, so that the stored rows are read front to back; a sliver at a time
// would read a 64-byte strip of each row, a miss per load. One vpermt2w per 16 columns of a pair.
//
// The loop fetches the rows kPrefetchPairs pairs ahead itself: a block's strip of a row is only 2n
// bytes (224 for a 112-row A block, 768 for B at N = 384), too short a stream for the hardware
// prefetcher, and without it the packer waited on memory for a fifth of a weight gradient's time
// (its operands, K = 16384 rows, come from DRAM). bench_gemm_bf16 at the weight-gradient shapes,
// two runs each: 565-613 GFLOP/s (68-75% of the bf16 peak) without, 690-757 (79-89%) at 4, 8 or
// 16 pairs ahead; 8 was best or level on most shapes.
void pack_k_down_columns(const uint16_t* src, int64_t ld, int64_t n, int64_t k, uint16_t* dst, int width,
                         int64_t sliver_size) {
  alignas(64) static const uint16_t kInterleave[2][32] = {
      {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39, 8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15,
       47},
      {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55, 24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61,
       30, 62, 31, 63}};
  const __m512i lo_index = _mm512_load_si512(kInterleave[0]), hi_index = _mm512_load_si512(kInterleave[1]);
  const int64_t kp = (k + 1) / 2, slivers = (n + width - 1) / width;
  const int64_t strip_bytes = 2 * n;
  for (int64_t q = 0; q < kp; q++) {
    const uint16_t* even_row = src + 2 * q * ld;
    const uint16_t* odd_row = 2 * q + 1 < k ? even_row + ld : nullptr;
    if (const int64_t ahead = 2 * (q + kPrefetchPairs); ahead + 1 < k) {
      const char* a = reinterpret_cast<const char*>(src + ahead * ld);
      const char* b = reinterpret_cast<const char*>(src + (ahead + 1) * ld);
      for (int64_t byte = 0; byte < strip_bytes + 63; byte += 64) {
        _mm_prefetch(a + byte, _MM_HINT_T0);
        _mm_prefetch(b + byte, _MM_HINT_T0);
      }
    }
    for (int64_t s = 0; s < slivers; s++) {
      const __mmask32 load = mask32(std::min<int64_t>(width, n - s * width));
      const __m512i even = _mm512_maskz_loadu_epi16(load, even_row + s * width);
      const __m512i odd = odd_row ? _mm512_maskz_loadu_epi16(load, odd_row + s * width) : _mm512_setzero_si512();
      uint16_t* d = dst + s * sliver_size + q * 2 * width;
      _mm512_storeu_si512(d, _mm512_permutex2var_epi16(even, lo_index, odd));
      if (width > 16) _mm512_storeu_si512(d + 32, _mm512_permutex2var_epi16(even, hi_index, odd));
    }
  }
}

// op(A)[i0 : i0+m, p0 : p0+k] -> a_pack: ceil(m/MR) slivers (kp, MR, 2), a_sliver_size(kp) apart.
void pack_a(const GemmBf16Problem& p, int64_t i0, int64_t m, int64_t p0, int64_t k, uint16_t* a_pack) {
  const int64_t kp = (k + 1) / 2;
  if (p.trans_a) return pack_k_down_columns(p.A + p0 * p.lda + i0, p.lda, m, k, a_pack, kMR, a_sliver_size(kp));
  for (int64_t s = 0; s * kMR < m; s++) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, m - s * kMR));
    pack_k_along_rows(p.A + (i0 + s * kMR) * p.lda + p0, p.lda, rows, k,
                      reinterpret_cast<uint32_t*>(a_pack + s * a_sliver_size(kp)), kMR);
  }
}

// op(B)[p0 : p0+k, j0 : j0+n] -> b_pack: ceil(n/NR) slivers (kp, NR, 2), b_sliver_size(kp) apart.
void pack_b(const GemmBf16Problem& p, int64_t p0, int64_t k, int64_t j0, int64_t n, uint16_t* b_pack) {
  const int64_t kp = (k + 1) / 2;
  if (!p.trans_b) return pack_k_down_columns(p.B + p0 * p.ldb + j0, p.ldb, n, k, b_pack, kNR, b_sliver_size(kp));
  for (int64_t s = 0; s * kNR < n; s++) {
    const int64_t col = j0 + s * kNR;
    const int cols = static_cast<int>(std::min<int64_t>(kNR, n - s * kNR));
    uint16_t* sliver = b_pack + s * b_sliver_size(kp);
    // Two 16-column halves of the sliver, each a 16-row transpose of the stored (N,K) rows.
    for (int half = 0; half < kNR / 16; half++)
      pack_k_along_rows(p.B + (col + 16 * half) * p.ldb + p0, p.ldb, std::clamp(cols - 16 * half, 0, 16), k,
                        reinterpret_cast<uint32_t*>(sliver) + 16 * half, kNR);
  }
}

// ---- micro-kernel -----------------------------------------------------------------------------

// Where one C tile goes: an f32 C (v = alpha * acc + beta * C), or a bf16 C
// (C = round(alpha * acc + partial + beta * C), partial being the f32 scratch of earlier K blocks
// when set). beta == 0 never reads C.
struct TileOut {
  float* c_f32;
  uint16_t* c_bf16;
  int64_t ldc;
  const float* partial;
  int64_t ld_partial;
  float alpha, beta;
};

inline __m512 load_bf16(__mmask16 mask, const uint16_t* p) {
  const __m512i wide = _mm512_maskz_cvtepu16_epi32(kAll, _mm256_maskz_loadu_epi16(mask, p));
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, wide, 16));
}

// Round to nearest even, bit for bit tg::f32_to_bf16: add 0x7fff plus the lowest kept bit; a NaN
// keeps its top bits and is made quiet (found with vfpclassps, bit 22 set: the bf16's bit 6). The
// bf16 is left in the high half of each 32-bit lane, for the two stores below to take.
inline __m512i round_bf16_high(__m512 v) {
  const __m512i x = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(kAll, x, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb);
  const __mmask16 nan = _mm512_fpclass_ps_mask(v, 0x81);  // quiet or signalling NaN
  return _mm512_mask_or_epi32(rounded, nan, x, _mm512_set1_epi32(0x00400000));
}

inline bool has_subnormal(__m512 v) { return _mm512_fpclass_ps_mask(v, 0x20) != 0; }

// 16 columns: vcvtneps2bf16, or the high halves shifted down and narrowed (vpmovdw).
inline void store_bf16(__mmask16 mask, uint16_t* p, __m512 v) {
  if (!has_subnormal(v)) return _mm256_mask_storeu_epi16(p, mask, (__m256i)_mm512_cvtneps_pbh(v));
  const __m512i rounded = _mm512_maskz_srli_epi32(kAll, round_bf16_high(v), 16);
  _mm256_mask_storeu_epi16(p, mask, _mm512_maskz_cvtepi32_epi16(kAll, rounded));
}

// 32 columns at once, the form a full tile row takes: one vcvtne2ps2bf16 rounds and packs both
// halves. At lm_head's input gradient (K = 65), where the epilogue is a large part of each tile,
// interleaved medians of 5, 7 and 9 rounds: 672-697 GFLOP/s with the integer rounding (13
// instructions a row) -> 710-755 (79-80% -> 83-86% of the peak beside them); the long-K shapes
// level. A row with a subnormal gathers the 32 rounded high halves with one vpermt2w.
inline void store_bf16_x2(__mmask32 mask, uint16_t* p, __m512 lo, __m512 hi) {
  if (!(has_subnormal(lo) || has_subnormal(hi)))
    return _mm512_mask_storeu_epi16(p, mask, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  alignas(64) static const uint16_t kHighHalves[32] = {1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21,
                                                       23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43,
                                                       45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
  const __m512i packed =
      _mm512_permutex2var_epi16(round_bf16_high(lo), _mm512_load_si512(kHighHalves), round_bf16_high(hi));
  _mm512_mask_storeu_epi16(p, mask, packed);
}

// How far ahead, in k pairs, the direct-B kernel fetches its two stored rows (see below). At
// lm_head's weight gradient, medians of 4-5 interleaved runs: 8 pairs 596-630 GFLOP/s, 24 pairs
// 619-643, 64 pairs 573 (the packed kernel 575-582).
constexpr int64_t kDirectAhead = 24;

// a (kp, MR, 2) and b (kp, NR, 2) packed slivers -> the top-left m x n of a C tile (m <= ROWS <=
// MR, n <= 16 * NV). NV = 1 for a right-edge tile at most 16 wide, which would otherwise pay for 32
// columns, and ROWS < MR for a bottom-edge tile, which would otherwise pay for 14 rows (see
// run_micro_kernel). The pragmas unroll before register allocation, so the accumulators stay in
// registers (as in the f32 kernel).
//
// DIRECT (NV = 2, a whole 32-column sliver, an even K block): b is not packed but the stored B
// itself, (K,N) with row stride ldb, from the block's first row and the sliver's first column. Each
// k pair's two rows are loaded and interleaved in registers with vpunpcklwd / vpunpckhwd, which
// work within 128-bit lanes: the first vector holds the pairs of columns 0-3, 8-11, 16-19 and 24-27,
// the second those of 4-7, 12-15, 20-23 and 28-31, and the epilogue puts the sums back in column
// order. Every column's pairs meet the same A pairs in the same order as in the packed kernel, so C
// is the same bits. See gemm_bf16_block_avx512bf16 for where it pays.
//
// Always inlined (with run_micro_kernel), as gcc did by itself before the DIRECT instances came:
// called as a function of its own it paid for a call and TileOut's loads on every tile, 6% at
// fc's input gradient.
template <int NV, int ROWS = kMR, bool DIRECT = false>
[[gnu::always_inline]] inline void micro_kernel(int64_t kp, const uint16_t* __restrict a,
                                                const uint16_t* __restrict b, int m, int n, const TileOut& out,
                                                int64_t ldb = 0) {
  static_assert(!DIRECT || NV == 2, "the direct-B kernel takes whole 32-column slivers");
  // C (or the partial sums) is read and written only after the k loop: start fetching its lines
  // now so that the loop hides their latency, as the f32 kernel does.
  char* c = out.c_f32 ? reinterpret_cast<char*>(out.c_f32) : reinterpret_cast<char*>(out.c_bf16);
  const int64_t row_bytes = out.c_f32 ? 4 * out.ldc : 2 * out.ldc, tile_bytes = (out.c_f32 ? 64 : 32) * NV;
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++) {
    _mm_prefetch(c + r * row_bytes, _MM_HINT_T0);
    _mm_prefetch(c + r * row_bytes + tile_bytes - 1, _MM_HINT_T0);
  }
  __m512 acc[ROWS][NV];
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
  for (int64_t q = 0; q < kp; q++) {
    __m512bh bv[NV];
    if constexpr (DIRECT) {
      const uint16_t* even = b + 2 * q * ldb;
      // The rows ahead: each is read 64 bytes at a time, one line of a different row per load,
      // which the hardware prefetcher does not follow. (Past the block's last row the addresses are
      // only hints: a prefetch never faults.)
      _mm_prefetch(reinterpret_cast<const char*>(even + 2 * kDirectAhead * ldb), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(even + (2 * kDirectAhead + 1) * ldb), _MM_HINT_T0);
      const __m512i e = _mm512_loadu_si512(even), o = _mm512_loadu_si512(even + ldb);
      bv[0] = (__m512bh)_mm512_maskz_unpacklo_epi16(~__mmask32(0), e, o);
      bv[NV - 1] = (__m512bh)_mm512_maskz_unpackhi_epi16(~__mmask32(0), e, o);
    } else {
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++) bv[v] = (__m512bh)_mm512_load_si512(b + q * 2 * kNR + 32 * v);
    }
#pragma GCC unroll 16
    for (int r = 0; r < ROWS; r++) {
      int32_t pair;
      std::memcpy(&pair, a + q * 2 * kMR + 2 * r, sizeof pair);
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], ar, bv[v]);
    }
  }
  __mmask16 cols[NV];
  for (int v = 0; v < NV; v++) cols[v] = mask16(n - 16 * v);
  const __m512 va = _mm512_set1_ps(out.alpha), vb = _mm512_set1_ps(out.beta);
  const bool read_c = out.beta != 0.0f;
#pragma GCC unroll 16
  for (int r = 0; r < ROWS; r++) {
    if (r >= m) break;
    __m512 sums[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) sums[v] = acc[r][v];
    if constexpr (DIRECT) {
      // 128-bit lanes (l0..l3) of the two accumulators back in column order: columns 0-15 are
      // acc0.l0, acc1.l0, acc0.l1, acc1.l1, and 16-31 the same of l2 and l3.
      const __m512 low_lanes = _mm512_maskz_shuffle_f32x4(kAll, acc[r][0], acc[r][NV - 1], 0x44);
      const __m512 high_lanes = _mm512_maskz_shuffle_f32x4(kAll, acc[r][0], acc[r][NV - 1], 0xee);
      sums[0] = _mm512_maskz_shuffle_f32x4(kAll, low_lanes, low_lanes, 0xd8);
      sums[NV - 1] = _mm512_maskz_shuffle_f32x4(kAll, high_lanes, high_lanes, 0xd8);
    }
    __m512 value[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) {
      value[v] = _mm512_mul_ps(va, sums[v]);
      if (out.c_f32) {
        float* c = out.c_f32 + r * out.ldc + 16 * v;
        if (read_c) value[v] = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(cols[v], c), value[v]);
        _mm512_mask_storeu_ps(c, cols[v], value[v]);
      } else {
        const uint16_t* c = out.c_bf16 + r * out.ldc + 16 * v;
        if (out.partial)
          value[v] = _mm512_add_ps(value[v], _mm512_maskz_loadu_ps(cols[v], out.partial + r * out.ld_partial + 16 * v));
        if (read_c) value[v] = _mm512_fmadd_ps(vb, load_bf16(cols[v], c), value[v]);
      }
    }
    if (out.c_f32) continue;
    if constexpr (NV == 2) store_bf16_x2(mask32(n), out.c_bf16 + r * out.ldc, value[0], value[1]);
    else store_bf16(cols[0], out.c_bf16 + r * out.ldc, value[0]);
  }
}

// A 32-wide tile of m rows, packed or DIRECT. A bottom-edge tile computes only its rows, rounded up
// to even: lm_head's weight gradient has 65 rows, four whole tiles and one of 9, which the 14-row
// kernel computed in 14 rows' time. (A narrower edge tile is a column edge as well, rarer; it keeps
// the 14-row kernel.)
template <bool DIRECT>
[[gnu::always_inline]] inline void run_32_wide(int64_t kp, const uint16_t* a, const uint16_t* b, int m, int n,
                                               const TileOut& out, int64_t ldb) {
  switch ((m + 1) / 2) {
    case 1: return micro_kernel<2, 2, DIRECT>(kp, a, b, m, n, out, ldb);
    case 2: return micro_kernel<2, 4, DIRECT>(kp, a, b, m, n, out, ldb);
    case 3: return micro_kernel<2, 6, DIRECT>(kp, a, b, m, n, out, ldb);
    case 4: return micro_kernel<2, 8, DIRECT>(kp, a, b, m, n, out, ldb);
    case 5: return micro_kernel<2, 10, DIRECT>(kp, a, b, m, n, out, ldb);
    case 6: return micro_kernel<2, 12, DIRECT>(kp, a, b, m, n, out, ldb);
    default: return micro_kernel<2, kMR, DIRECT>(kp, a, b, m, n, out, ldb);
  }
}

// ldb > 0: b is the stored B of a whole sliver, for the DIRECT kernel. Inlined into the block loop
// with the kernels (see micro_kernel).
[[gnu::always_inline]] inline void run_micro_kernel(int64_t kp, const uint16_t* a, const uint16_t* b, int m, int n,
                                                    const TileOut& out, int64_t ldb = 0) {
  if (ldb > 0) return run_32_wide<true>(kp, a, b, m, n, out, ldb);
  if (n <= 16) return micro_kernel<1>(kp, a, b, m, n, out);
  run_32_wide<false>(kp, a, b, m, n, out, 0);
}

// A right-edge sliver only a few columns wide (lm_head's vocabulary of 65 leaves one column past
// two whole slivers) would cost the 16-wide kernel 14 vdpbf16ps a pair for each 14-row tile, 15 of
// every 16 lanes thrown away: a fifth of that product's time. This kernel turns the tile on its
// side: a column's 14 rows are one A sliver slot (14 pairs, read as a vector of 16 whose last two
// lanes belong to the next slot or the pad and are ignored), multiplied by the column's pair
// broadcast, one vdpbf16ps a pair for 14 rows. Each lane still sums its k pairs in order with the
// same instruction, so C is bit for bit what the 16-wide kernel gives. The block's A slivers
// (up to kMC / kMR = 8) run side by side, eight independent sums, so that the loop is not bound
// by the instruction's latency; `slivers` past the block's repeat its last one (their lanes are
// not stored), which keeps one loop for every block height.
//
// Up to 4 columns, a column at a time (each pass reads the block's A again, from L1 or L2): 4
// vdpbf16ps a pair for every 14-row tile against the 16-wide kernel's 14. bench_gemm_bf16, lm_head's
// forward (--shape 16384,65,384,0,1), two threads, old and new interleaved three times: 533-536
// GFLOP/s before, 606-621 after; at N = 68 (a 4-column edge) 556-631 before, 568-579 after.
constexpr int kNarrowCols = 4;
constexpr int kNarrowSlivers = static_cast<int>(kMC / kMR);

// a: the block's packed A slivers, a_stride elements apart, covering m rows; b: the B sliver whose
// columns [0, n) remain (n <= kNarrowCols); out: C from the block's first row and the sliver's
// first column.
void narrow_kernel(int64_t kp, const uint16_t* a, int64_t a_stride, int m, const uint16_t* b, int n,
                   const TileOut& out) {
  const int slivers = (m + kMR - 1) / kMR;
  const uint16_t* rows[kNarrowSlivers];
  for (int s = 0; s < kNarrowSlivers; s++) rows[s] = a + std::min(s, slivers - 1) * a_stride;
  for (int j = 0; j < n; j++) {
    __m512 acc[kNarrowSlivers];
#pragma GCC unroll 8
    for (int s = 0; s < kNarrowSlivers; s++) acc[s] = _mm512_setzero_ps();
    for (int64_t q = 0; q < kp; q++) {
      int32_t pair;
      std::memcpy(&pair, b + q * 2 * kNR + 2 * j, sizeof pair);
      const __m512bh bj = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 8
      for (int s = 0; s < kNarrowSlivers; s++)
        acc[s] = _mm512_dpbf16_ps(acc[s], (__m512bh)_mm512_loadu_si512(rows[s] + q * 2 * kMR), bj);
    }
    // The epilogue of micro_kernel, one element at a time (a column is 14 rows, ldc apart).
    alignas(64) float sums[kNarrowSlivers][16];
    for (int s = 0; s < slivers; s++) _mm512_store_ps(sums[s], acc[s]);
    for (int i = 0; i < m; i++) {
      float value = out.alpha * sums[i / kMR][i % kMR];
      if (out.c_f32) {
        float& c = out.c_f32[i * out.ldc + j];
        c = out.beta != 0.0f ? std::fma(out.beta, c, value) : value;
      } else {
        uint16_t& c = out.c_bf16[i * out.ldc + j];
        if (out.partial) value += out.partial[i * out.ld_partial + j];
        if (out.beta != 0.0f) value = std::fma(out.beta, bf16_to_f32(c), value);
        c = f32_to_bf16(value);
      }
    }
  }
}

// ---- the serial blocked GEMM ------------------------------------------------------------------

// A per-thread buffer, grown on demand and kept (GEMMs run thousands of times per training run),
// 64-byte aligned for the kernel's aligned B loads.
template <typename T>
struct Buffer {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data;
  size_t size = 0;
  T* grow(size_t needed) {
    if (size < needed) {
      data.reset(static_cast<T*>(std::aligned_alloc(64, (needed * sizeof(T) + 63) / 64 * 64)));
      if (!data) throw std::bad_alloc();
      size = needed;
    }
    return data.get();
  }
};

struct Buffers {
  Buffer<uint16_t> a, b;
  Buffer<float> partial;
};

Buffers& buffers() {
  static thread_local Buffers b;
  return b;
}

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

// Where the tile of C at (row, col) goes in a K block (first and last say which): later K blocks add
// onto the sums the first one wrote, in an f32 C itself, or for a bf16 C with K past one block in
// its f32 scratch `part` (row stride nc, null otherwise), whose last block adds the scratch and
// rounds into C.
TileOut tile_out(const GemmBf16Problem& p, int64_t row, int64_t col, bool first, bool last, float* part, int64_t nc) {
  if (p.c_f32) return TileOut{p.c_f32 + row * p.ldc + col, nullptr, p.ldc, nullptr, 0, p.alpha, first ? p.beta : 1.0f};
  if (part && !last) return TileOut{part, nullptr, nc, nullptr, 0, p.alpha, first ? 0.0f : 1.0f};
  return TileOut{nullptr, p.c_bf16 + row * p.ldc + col, p.ldc, part, nc, p.alpha, p.beta};
}

}  // namespace

void gemm_bf16_block_avx512bf16(const GemmBf16Problem& p, int64_t i0, int64_t m, int64_t j0, int64_t n) {
  const int64_t K = p.K;
  const bool via_partial = p.c_bf16 && K > kKC;  // a bf16 C that needs partial sums kept in f32
  const int64_t kp_max = (std::min(kKC, K) + 1) / 2;
  const int64_t nc_max = std::min(kNC, n), chunk = via_partial ? partial_rows(nc_max) : m;
  Buffers& buf = buffers();
  uint16_t* a_pack = buf.a.grow(static_cast<size_t>(round_up(std::min(kMC, m), kMR) / kMR * a_sliver_size(kp_max)));
  uint16_t* b_pack = buf.b.grow(static_cast<size_t>(round_up(nc_max, kNR) / kNR * b_sliver_size(kp_max)));
  float* partial = via_partial ? buf.partial.grow(static_cast<size_t>(std::min(chunk, m) * nc_max)) : nullptr;
  for (int64_t jc = 0; jc < n; jc += kNC) {
    const int64_t nc = std::min(kNC, n - jc);
    for (int64_t rc = 0; rc < m; rc += chunk) {
      const int64_t rows = std::min(chunk, m - rc);
      for (int64_t pc = 0; pc < K; pc += kKC) {
        const int64_t kc = std::min(kKC, K - pc), kp = (kc + 1) / 2;
        const bool first = pc == 0, last = pc + kc == K;
        // A B panel that serves a single A block (a weight gradient of few rows, lm_head's 65) is
        // not packed: at 65 rows per packed element the packing took a seventh of the product's
        // time. Its whole slivers go to the DIRECT kernel straight from the stored B (K,N); an edge
        // sliver, or a K block ending on a padded pair, is packed as usual. Only for rows of at
        // most 1 KB: the kernel reads 64 bytes of each row, and with rows further apart (most
        // likely a new page every row or two) it lost. bench_gemm_bf16, medians of 3-5
        // interleaved runs, packed -> direct: 65 x 384 x 16384 (lm_head's dW, 768-byte rows)
        // 573-601 -> 651-660 GFLOP/s, 64 x 384 x 384 level, but 64 x 1536 x 16384 (3 KB rows)
        // 508 -> 377.
        const bool direct_b = !p.trans_b && rows <= kMC && kc % 2 == 0 && p.ldb <= 512;
        if (!direct_b) pack_b(p, pc, kc, j0 + jc, nc, b_pack);
        for (int64_t ic = 0; ic < rows; ic += kMC) {
          const int64_t mc = std::min(kMC, rows - ic);
          pack_a(p, i0 + rc + ic, mc, pc, kc, a_pack);
          for (int64_t jr = 0; jr < nc; jr += kNR) {
            const int nt = static_cast<int>(std::min<int64_t>(kNR, nc - jr));
            const bool direct = direct_b && nt == kNR;
            uint16_t* sliver = b_pack + jr / kNR * b_sliver_size(kp);
            if (direct_b && !direct) pack_b(p, pc, kc, j0 + jc + jr, nt, sliver);
            const uint16_t* b = direct ? p.B + pc * p.ldb + j0 + jc + jr : sliver;
            if (nt <= kNarrowCols) {
              narrow_kernel(kp, a_pack, a_sliver_size(kp), static_cast<int>(mc), b,
                            nt, tile_out(p, i0 + rc + ic, j0 + jc + jr, first, last,
                                         via_partial ? partial + ic * nc + jr : nullptr, nc));
              continue;
            }
            for (int64_t ir = 0; ir < mc; ir += kMR) {
              const int mt = static_cast<int>(std::min<int64_t>(kMR, mc - ir));
              const int64_t row = i0 + rc + ic + ir, col = j0 + jc + jr;
              float* part = via_partial ? partial + (ic + ir) * nc + jr : nullptr;
              const TileOut out = tile_out(p, row, col, first, last, part, nc);
              run_micro_kernel(kp, a_pack + ir / kMR * a_sliver_size(kp), b, mt, nt, out, direct ? p.ldb : 0);
            }
          }
        }
      }
    }
  }
}

void gemm_bf16_sum_k_parts_avx512bf16(const GemmBf16Problem& p, const float* partials, int count, int64_t r0,
                                      int64_t r1) {
  const int64_t part = p.M * p.N;
  const __m512 va = _mm512_set1_ps(p.alpha), vb = _mm512_set1_ps(p.beta);
  for (int64_t i = r0; i < r1; i++)
    for (int64_t j = 0; j < p.N; j += 16) {
      const __mmask16 cols = mask16(p.N - j);
      const float* src = partials + i * p.N + j;
      __m512 sum = _mm512_maskz_loadu_ps(cols, src);
      for (int t = 1; t < count; t++) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(cols, src + t * part));
      __m512 value = _mm512_mul_ps(va, sum);
      if (p.c_f32) {
        float* c = p.c_f32 + i * p.ldc + j;
        if (p.beta != 0.0f) value = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(cols, c), value);
        _mm512_mask_storeu_ps(c, cols, value);
      } else {
        uint16_t* c = p.c_bf16 + i * p.ldc + j;
        if (p.beta != 0.0f) value = _mm512_fmadd_ps(vb, load_bf16(cols, c), value);
        store_bf16(cols, c, value);
      }
    }
}

}  // namespace tg::cpu
