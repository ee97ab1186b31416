// BLIS-style SGEMM. The loop nest, outermost first (row-major C, vectors run along N):
//
//   jc over N in NC columns    B panel  (KC, NC) packed once, lives in L3
//   pc over K in KC            one rank-KC update of the whole C block
//   ic over M in MC rows       A block  (MC, KC) packed once per pc, lives in L2
//   jr over NC in NR           B sliver (KC, NR), reused by ...
//   ir over MC in MR           ... every A sliver (KC, MR) of the block
//   micro-kernel               C tile (MR, NR) in registers, KC rank-1 updates
//
// Packing copies each operand once into the exact order the micro-kernel reads it (unit stride,
// zero-padded to whole MR / NR slivers), which is also where transposes are absorbed: op(A) and
// op(B) are only ever read through packers (GemmPackA / GemmPackB in gemm.h). A stored matrix is
// packed by pack_a / pack_b; conv2d packs its patch matrix straight from the image instead, so the
// same loop nest and micro-kernel run an implicit-im2col convolution. A packer is called once per
// cache block, so the virtual call costs nothing measurable. Threads split C into a grid of disjoint
// blocks, each run as an independent serial GEMM with its own packing buffers: no barriers, and
// the grid follows the shape (rows for tall C, columns for wide C).
#include "ops/cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "ops/cpu/gelu_math.h"
#include "ops/cpu/half_convert.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__)
#include "ops/cpu/avx512_transpose.h"
#endif

namespace tg::cpu {
TG_CPU_ISA_BEGIN

namespace {

// Register tile (kGemmMR x kGemmNR, in gemm.h for the packers).
constexpr int kMR = kGemmMR, kNR = kGemmNR;
#if defined(__AVX512F__)
constexpr const char* kKernelName = "avx512 14x32";
#elif defined(__AVX2__)
constexpr const char* kKernelName = "avx2 6x16";
#else
constexpr const char* kKernelName = "scalar 4x16";
#endif

// Cache blocks, measured on Zen 5 (48 KiB L1d, 1 MiB L2 per core, 32 MiB L3 shared). The A block
// MC*KC*4 = 336 KiB sits in L2 and the B panel KC*NC*4 = 6 MiB per thread in L3. The B sliver
// KC*NR*4 = 96 KiB lives in L2 rather than L1: L2 feeds the 128 bytes of B per k step easily, and a
// long KC writes each C tile fewer times. Measured on 2 threads (GFLOP/s from process CPU time,
// the machine being shared) at 2048^3 and the GPT's 16384x1536x384 and 16384x384x1536: KC 256 x
// MC 336 gave 350/366/334, KC 512 x MC 168 380/388/376, KC 768 x MC 112 379/403/384.
// Override with -DTG_GEMM_KC=... (and _MC, _NC) to re-tune on another machine.
#ifndef TG_GEMM_KC
#define TG_GEMM_KC 768
#endif
#ifndef TG_GEMM_MC
#define TG_GEMM_MC (kMR * 8)
#endif
#ifndef TG_GEMM_NC
#define TG_GEMM_NC 2048
#endif
constexpr int64_t kKC = TG_GEMM_KC, kMC = TG_GEMM_MC, kNC = TG_GEMM_NC;
static_assert(kMC % kMR == 0 && kNC % kNR == 0, "cache blocks must hold whole register tiles");

// Below this many flops a GEMM finishes in a few microseconds on one core, which is the order of
// waking a second OpenMP thread: run it serially.
constexpr double kMinParallelFlops = 2.0e6;

// ---- micro-kernels ----------------------------------------------------------------------------
// a (k, MR) and b (k, NR) packed slivers -> c (MR, NR) tile with row stride ldc:
// c = alpha * a^T b + beta * c, where beta == 0 never reads c.

#if defined(__AVX512F__)
// NV = vectors per row: 2 for the full 14 x 32 tile, 1 for a right-edge tile at most 16 wide,
// which would otherwise pay for 32 columns (the GPT's 65-wide vocabulary ends in such a tile).
// The unroll pragmas make gcc unroll before it decides where acc lives, so the accumulators stay
// in registers instead of round-tripping through the stack at the start and end.
template <int NV>
void micro_kernel_avx512(int64_t k, const float* __restrict a, const float* __restrict b, float* __restrict c,
                         int64_t ldc, float alpha, float beta) {
  // The C tile is read (beta != 0) and written only after the k loop; start fetching its lines now
  // so that the loop hides their latency (C is often far bigger than L2).
#pragma GCC unroll 16
  for (int r = 0; r < kMR; r++) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16 * NV - 1), _MM_HINT_T0);
  }
  __m512 acc[kMR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; r++)
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < k; p++) {
    __m512 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) bv[v] = _mm512_load_ps(b + p * kNR + 16 * v);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; r++) {
      __m512 ar = _mm512_set1_ps(a[p * kMR + r]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
  __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
#pragma GCC unroll 16
    for (int r = 0; r < kMR; r++)
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, _mm512_mul_ps(va, acc[r][v]));
  } else {
    __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; r++)
#pragma GCC unroll 2
      for (int v = 0; v < NV; v++) {
        float* out = c + r * ldc + 16 * v;
        _mm512_storeu_ps(out, _mm512_fmadd_ps(va, acc[r][v], _mm512_mul_ps(vb, _mm512_loadu_ps(out))));
      }
  }
}

void micro_kernel(int64_t k, const float* __restrict a, const float* __restrict b, float* __restrict c, int64_t ldc,
                  float alpha, float beta) {
  micro_kernel_avx512<2>(k, a, b, c, ldc, alpha, beta);
}
#elif defined(__AVX2__)
void micro_kernel(int64_t k, const float* __restrict a, const float* __restrict b, float* __restrict c, int64_t ldc,
                  float alpha, float beta) {
  __m256 acc[kMR][2];
  for (int r = 0; r < kMR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < k; p++) {
    __m256 b0 = _mm256_load_ps(b + p * kNR), b1 = _mm256_load_ps(b + p * kNR + 8);
    for (int r = 0; r < kMR; r++) {
      __m256 ar = _mm256_broadcast_ss(a + p * kMR + r);
      acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.0f) {
    for (int r = 0; r < kMR; r++) {
      _mm256_storeu_ps(c + r * ldc, _mm256_mul_ps(va, acc[r][0]));
      _mm256_storeu_ps(c + r * ldc + 8, _mm256_mul_ps(va, acc[r][1]));
    }
  } else {
    __m256 vb = _mm256_set1_ps(beta);
    for (int r = 0; r < kMR; r++) {
      float* row = c + r * ldc;
      _mm256_storeu_ps(row, _mm256_fmadd_ps(va, acc[r][0], _mm256_mul_ps(vb, _mm256_loadu_ps(row))));
      _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(va, acc[r][1], _mm256_mul_ps(vb, _mm256_loadu_ps(row + 8))));
    }
  }
}
#else
void micro_kernel(int64_t k, const float* __restrict a, const float* __restrict b, float* __restrict c, int64_t ldc,
                  float alpha, float beta) {
  float acc[kMR][kNR] = {};
  for (int64_t p = 0; p < k; p++)
    for (int r = 0; r < kMR; r++) {
      float ar = a[p * kMR + r];
#pragma omp simd
      for (int j = 0; j < kNR; j++) acc[r][j] += ar * b[p * kNR + j];
    }
  for (int r = 0; r < kMR; r++)
    for (int j = 0; j < kNR; j++)
      c[r * ldc + j] = beta == 0.0f ? alpha * acc[r][j] : alpha * acc[r][j] + beta * c[r * ldc + j];
}
#endif

// A partial tile (m < MR or n < NR, at the bottom/right edge of C): the padded sliver product goes
// to a scratch tile, and only its m x n corner is merged into C.
void edge_kernel(int64_t k, const float* a, const float* b, float* c, int64_t ldc, int m, int n, float alpha,
                 float beta) {
  alignas(64) float tile[kMR * kNR];
#if defined(__AVX512F__)
  if (n <= 16) micro_kernel_avx512<1>(k, a, b, tile, kNR, 1.0f, 0.0f);
  else
#endif
    micro_kernel(k, a, b, tile, kNR, 1.0f, 0.0f);
  for (int r = 0; r < m; r++)
    for (int j = 0; j < n; j++)
      c[r * ldc + j] = beta == 0.0f ? alpha * tile[r * kNR + j] : alpha * tile[r * kNR + j] + beta * c[r * ldc + j];
}

// ---- packing ----------------------------------------------------------------------------------

#if defined(__AVX512F__)
// `rows` (<= 16) rows of src (row stride ld), columns p0..p0+15 -> dst (16, dst_stride) k-major:
// dst[j * dst_stride + r] = src[r * ld + p0 + j]. Rows past `rows` come out as zeros. Each store
// writes 16 floats; with dst_stride < 16 the tail of one store is overwritten by the next, and the
// last one spills 16 - dst_stride floats past the block (the pack buffers keep slack for it).
inline void transpose_rows_to_k_major(const float* src, int64_t ld, int rows, float* dst, int64_t dst_stride) {
  __m512 v[16];
  for (int r = 0; r < 16; r++) v[r] = r < rows ? _mm512_loadu_ps(src + r * ld) : _mm512_setzero_ps();
  transpose16x16(v);
  for (int j = 0; j < 16; j++) _mm512_storeu_ps(dst + j * dst_stride, v[j]);
}
#endif

// op(A)[0:m, 0:k] -> a_pack (ceil(m/MR), k, MR): sliver s holds rows s*MR.., k-major, zero-padded.
// `a` points at op(A)(0, 0); lda is the stored row stride.
void pack_a(bool trans, int64_t m, int64_t k, const float* a, int64_t lda, float* a_pack) {
  if (trans) {
    // Stored (K, M): one k's MR values are adjacent. Walk k outermost so that each stored row is
    // read once, front to back, and deal its MR-wide pieces out to the slivers (a fixed-size copy
    // for every whole sliver); walking sliver by sliver instead re-reads every cache line MR/16
    // times at a stride of lda.
    const int64_t full = m / kMR * kMR;
    for (int64_t p = 0; p < k; p++) {
      const float* src = a + p * lda;
      for (int64_t i0 = 0; i0 < full; i0 += kMR) std::memcpy(a_pack + i0 * k + p * kMR, src + i0, sizeof(float) * kMR);
      if (full < m) {
        float* d = a_pack + full * k + p * kMR;
        for (int64_t r = 0; r < kMR; r++) d[r] = full + r < m ? src[full + r] : 0.0f;
      }
    }
    return;
  }
  // Stored (M, K): MR row streams, interleaved k by k.
  for (int64_t i0 = 0; i0 < m; i0 += kMR) {
    const float* rows[kMR];
    for (int r = 0; r < kMR; r++) rows[r] = i0 + r < m ? a + (i0 + r) * lda : nullptr;
    pack_a_rows(rows, k, kMR, a_pack + i0 * k);
  }
}

// op(B)[0:k, 0:n] -> b_pack (ceil(n/NR), k, NR): sliver s holds columns s*NR.., k-major,
// zero-padded. `b` points at op(B)(0, 0); ldb is the stored row stride.
void pack_b(bool trans, int64_t k, int64_t n, const float* b, int64_t ldb, float* b_pack) {
  for (int64_t j0 = 0; j0 < n; j0 += kNR) {
    const int64_t cols = std::min<int64_t>(kNR, n - j0);
    float* dst = b_pack + j0 * k;
    if (!trans) {
      // Stored (K, N): one k's NR values are one contiguous run.
      const float* src = b + j0;
      if (cols == kNR) {
        for (int64_t p = 0; p < k; p++) std::memcpy(dst + p * kNR, src + p * ldb, sizeof(float) * kNR);
      } else {
        for (int64_t p = 0; p < k; p++) {
          const float* s = src + p * ldb;
          float* d = dst + p * kNR;
          for (int64_t j = 0; j < kNR; j++) d[j] = j < cols ? s[j] : 0.0f;
        }
      }
    } else {
      // Stored (N, K), the Linear weight layout: read each of the NR rows contiguously and scatter
      // into the sliver, which is small enough (KC*NR*4 bytes) to stay in L1 while it fills.
      const float* src = b + j0 * ldb;
      int64_t p0 = 0;
#if defined(__AVX512F__)
      // Two 16-row halves of the sliver, 16 k at a time.
      for (; p0 + 16 <= k; p0 += 16)
        for (int half = 0; half < kNR / 16; half++)
          transpose_rows_to_k_major(src + half * 16 * ldb + p0, ldb,
                                    static_cast<int>(std::clamp<int64_t>(cols - half * 16, 0, 16)),
                                    dst + p0 * kNR + half * 16, kNR);
#endif
      for (int64_t j = 0; j < cols; j++) {
        const float* s = src + j * ldb;
        for (int64_t p = p0; p < k; p++) dst[p * kNR + j] = s[p];
      }
      for (int64_t j = cols; j < kNR; j++)
        for (int64_t p = p0; p < k; p++) dst[p * kNR + j] = 0.0f;
    }
  }
}

// ---- the serial blocked GEMM ------------------------------------------------------------------

// Packing buffers, one pair per thread, grown on demand and kept: GEMMs run thousands of times per
// training run and allocating per call would show up at small sizes.
struct PackBuffers {
  struct Free { void operator()(float* p) const { std::free(p); } };
  std::unique_ptr<float, Free> a, b;
  size_t a_size = 0, b_size = 0;
  static float* grow(std::unique_ptr<float, Free>& buffer, size_t& size, size_t needed) {
    if (size < needed) {
      // 16 floats of slack for the spill of transpose_rows_to_k_major's last store.
      size_t bytes = ((needed + 16) * sizeof(float) + 63) / 64 * 64;
      buffer.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!buffer) throw std::bad_alloc();
      size = needed;
    }
    return buffer.get();
  }
};

PackBuffers& pack_buffers() {
  static thread_local PackBuffers buffers;
  return buffers;
}

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

// C = beta * C, with beta == 0 writing zeros (never 0 * NaN).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  if (beta == 1.0f) return;
  for (int64_t i = 0; i < M; i++) {
    float* row = C + i * ldc;
    if (beta == 0.0f) std::memset(row, 0, static_cast<size_t>(N) * sizeof(float));
    else
#pragma omp simd
      for (int64_t j = 0; j < N; j++) row[j] *= beta;
  }
}

// The loop nest from the top of the file, on one thread, for the block op(A)[i0 : i0+M] @
// op(B)[:, j0 : j0+N] of a larger product; C points at that block. Needs M, N, K >= 1.
void gemm_serial(int64_t i0, int64_t M, int64_t j0, int64_t N, int64_t K, float alpha, const GemmPackA& A,
                 const GemmPackB& B, float beta, float* C, int64_t ldc) {
  PackBuffers& buffers = pack_buffers();
  const int64_t kc_max = std::min(kKC, K);
  float* a_pack = PackBuffers::grow(buffers.a, buffers.a_size,
                                    static_cast<size_t>(round_up(std::min(kMC, M), kMR) * kc_max));
  float* b_pack = PackBuffers::grow(buffers.b, buffers.b_size,
                                    static_cast<size_t>(round_up(std::min(kNC, N), kNR) * kc_max));
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      // Later K blocks add onto the partial sums the first one wrote.
      const float beta_block = pc == 0 ? beta : 1.0f;
      const float* b_panel = B.packed(pc, kc, j0 + jc, nc, kNR);
      if (!b_panel) {
        B.pack(pc, kc, j0 + jc, nc, kNR, b_pack);
        b_panel = b_pack;
      }
      for (int64_t ic = 0; ic < M; ic += kMC) {
        const int64_t mc = std::min(kMC, M - ic);
        A.pack(i0 + ic, mc, pc, kc, kMR, a_pack);
        for (int64_t jr = 0; jr < nc; jr += kNR) {
          const int n = static_cast<int>(std::min<int64_t>(kNR, nc - jr));
          const float* b_sliver = b_panel + jr * kc;
          for (int64_t ir = 0; ir < mc; ir += kMR) {
            const int m = static_cast<int>(std::min<int64_t>(kMR, mc - ir));
            float* c_tile = C + (ic + ir) * ldc + jc + jr;
            if (m == kMR && n == kNR) micro_kernel(kc, a_pack + ir * kc, b_sliver, c_tile, ldc, alpha, beta_block);
            else edge_kernel(kc, a_pack + ir * kc, b_sliver, c_tile, ldc, m, n, alpha, beta_block);
          }
        }
      }
    }
  }
}

// Handles the degenerate cases, then runs the blocked GEMM on this thread (arguments as gemm_serial).
void gemm_one_thread(int64_t i0, int64_t M, int64_t j0, int64_t N, int64_t K, float alpha, const GemmPackA& A,
                     const GemmPackB& B, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) return scale_c(M, N, beta, C, ldc);
  gemm_serial(i0, M, j0, N, K, alpha, A, B, beta, C, ldc);
}

// Splits `threads` into a grid rows x cols over C that keeps every thread's block as square as the
// shape allows (less packing per flop) and the register tiles whole (no thread pays for padding
// another could have avoided).
void thread_grid(int64_t M, int64_t N, int64_t K, int threads, int& grid_rows, int& grid_cols) {
  const int64_t row_tiles = (M + kMR - 1) / kMR, col_tiles = (N + kNR - 1) / kNR;
  double best = 0;
  for (int rows = 1; rows <= threads; rows++) {
    if (threads % rows) continue;
    const int cols = threads / rows;
    const double m = static_cast<double>((row_tiles + rows - 1) / rows * kMR);
    const double n = static_cast<double>((col_tiles + cols - 1) / cols * kNR);
    // Per-thread time ~ its padded flops plus the packing of its A and B blocks; packing one
    // element costs about as much as a few register-tile FMAs.
    const double cost = m * n * static_cast<double>(K) + 8.0 * (m + n) * static_cast<double>(K);
    if (rows == 1 || cost < best) { best = cost; grid_rows = rows; grid_cols = cols; }
  }
}

int threads_for(int64_t M, int64_t N, int64_t K) {
  if (omp_in_parallel()) return 1;
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  if (flops < kMinParallelFlops) return 1;
  return omp_get_max_threads();
}

}  // namespace

const char* gemm_kernel_name() { return kKernelName; }
int gemm_mr() { return kMR; }
int gemm_nr() { return kNR; }
int64_t gemm_kc() { return kKC; }

void gemm_pack_matrix_a(bool trans, const float* a, int64_t ld, int64_t i0, int64_t m, int64_t p0, int64_t k,
                        int /*mr: kMR, the caller's GEMM being this level's*/, float* a_pack) {
  pack_a(trans, m, k, trans ? a + p0 * ld + i0 : a + i0 * ld + p0, ld, a_pack);
}

void gemm_pack_matrix_b(bool trans, const float* b, int64_t ld, int64_t p0, int64_t k, int64_t j0, int64_t n,
                        int /*nr: kNR*/, float* b_pack) {
  pack_b(trans, k, n, trans ? b + j0 * ld + p0 : b + p0 * ld + j0, ld, b_pack);
}

void pack_a_rows(const float* const* rows, int64_t k, int /*mr: kMR*/, float* sliver) {
  int64_t p = 0;
#if defined(__AVX512F__)
  // 16 k at a time: load 16 floats of each row stream, transpose, store 16 k-major MR-rows (each
  // store writes 16 floats, of which the next store overwrites the 16 - MR past this row).
  static_assert(kMR <= 16, "the AVX-512 A packer transposes 16 x 16 blocks");
  __m512 v[16];
  for (; p + 16 <= k; p += 16) {
    for (int r = 0; r < 16; r++) v[r] = r < kMR && rows[r] ? _mm512_loadu_ps(rows[r] + p) : _mm512_setzero_ps();
    transpose16x16(v);
    for (int j = 0; j < 16; j++) _mm512_storeu_ps(sliver + (p + j) * kMR, v[j]);
  }
  if (p < k) {
    // The tail (a convolution's channel run of 3 or 5 lands here whole): masked loads read only
    // the rem valid floats of each row.
    const int rem = static_cast<int>(k - p);
    const __mmask16 mask = static_cast<__mmask16>((1u << rem) - 1);
    for (int r = 0; r < 16; r++)
      v[r] = r < kMR && rows[r] ? _mm512_maskz_loadu_ps(mask, rows[r] + p) : _mm512_setzero_ps();
    transpose16x16(v);
    for (int j = 0; j < rem; j++) _mm512_storeu_ps(sliver + (p + j) * kMR, v[j]);
  }
#else
  for (; p < k; p++)
    for (int r = 0; r < kMR; r++) sliver[p * kMR + r] = rows[r] ? rows[r][p] : 0.0f;
#endif
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_packed(M, N, K, alpha, MatrixPackA(trans_a, A, lda), MatrixPackB(trans_b, B, ldb), beta, C, ldc);
}

void gemm_packed(int64_t M, int64_t N, int64_t K, float alpha, const GemmPackA& A, const GemmPackB& B, float beta,
                 float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  const int threads = threads_for(M, N, K);
  if (threads <= 1 || K <= 0 || alpha == 0.0f) {
    gemm_one_thread(0, M, 0, N, K, alpha, A, B, beta, C, ldc);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    // The team may be smaller than asked for (nested or limited OpenMP): plan with what we got.
    const int team = omp_get_num_threads(), id = omp_get_thread_num();
    int grid_rows = 1, grid_cols = team;
    thread_grid(M, N, K, team, grid_rows, grid_cols);
    const int64_t row_tiles = (M + kMR - 1) / kMR, col_tiles = (N + kNR - 1) / kNR;
    const int gr = id / grid_cols, gc = id % grid_cols;
    const int64_t i0 = std::min(M, row_tiles * gr / grid_rows * kMR);
    const int64_t i1 = std::min(M, row_tiles * (gr + 1) / grid_rows * kMR);
    const int64_t j0 = std::min(N, col_tiles * gc / grid_cols * kNR);
    const int64_t j1 = std::min(N, col_tiles * (gc + 1) / grid_cols * kNR);
    if (i1 > i0 && j1 > j0) gemm_one_thread(i0, i1 - i0, j0, j1 - j0, K, alpha, A, B, beta, C + i0 * ldc + j0, ldc);
  }
}

void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch,
                  int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  const int threads = threads_for(M, N, K * batch);
  // Whole items per thread when they divide evenly or are plentiful (attention's B*NH small
  // GEMMs): no intra-GEMM splitting at all. Otherwise each item uses every thread in turn.
  if (threads > 1 && (batch % threads == 0 || batch >= 4 * threads)) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < batch; i++)
      gemm_one_thread(0, M, 0, N, K, alpha, MatrixPackA(trans_a, A + i * stride_a, lda),
                      MatrixPackB(trans_b, B + i * stride_b, ldb), beta, C + i * stride_c, ldc);
    return;
  }
  for (int64_t i = 0; i < batch; i++)
    gemm(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta, C + i * stride_c, ldc);
}

void broadcast_rows(float* out, const float* bias, int64_t M, int64_t N) {
#pragma omp parallel for schedule(static) if (M * N > (1 << 16))
  for (int64_t i = 0; i < M; i++) std::memcpy(out + i * N, bias, static_cast<size_t>(N) * sizeof(float));
}

// dbias (N) += the column sums of M rows, row i read by row(i, buffer) as N f32 values (the row
// itself, or a widened copy in `buffer`, N floats per thread). Each thread sums a band of rows
// into its own partial (a unit-stride vector add per row), and the partials are added into dbias
// in thread order, which keeps the result the same from run to run.
template <class Row>
static void column_sums_into(float* dbias, int64_t M, int64_t N, Row row) {
  const int threads = M * N > (1 << 16) && !omp_in_parallel() ? omp_get_max_threads() : 1;
  std::unique_ptr<float[]> partials(new float[static_cast<size_t>(threads) * N]());
#pragma omp parallel num_threads(threads)
  {
    const int team = omp_get_num_threads(), id = omp_get_thread_num();
    float* part = partials.get() + static_cast<int64_t>(id) * N;
    std::vector<float> buffer;
    for (int64_t i = M * id / team; i < M * (id + 1) / team; i++) {
      const float* values = row(i, buffer);
#pragma omp simd
      for (int64_t j = 0; j < N; j++) part[j] += values[j];
    }
  }
  for (int t = 0; t < threads; t++)
#pragma omp simd
    for (int64_t j = 0; j < N; j++) dbias[j] += partials[static_cast<size_t>(t) * N + j];
}

void column_sums_accumulate(float* dbias, const float* dout, int64_t M, int64_t N) {
  if (M <= 0 || N <= 0) return;
  column_sums_into(dbias, M, N, [dout, N](int64_t i, std::vector<float>&) { return dout + i * N; });
}

void broadcast_rows_half(DType /*dtype: the bits are copied*/, uint16_t* out, const uint16_t* bias, int64_t M,
                         int64_t N) {
#pragma omp parallel for schedule(static) if (M * N > (1 << 16))
  for (int64_t i = 0; i < M; i++) std::memcpy(out + i * N, bias, static_cast<size_t>(N) * sizeof(uint16_t));
}

void column_sums_accumulate_half(DType dtype, uint16_t* dbias, const uint16_t* dout, int64_t M, int64_t N) {
  if (M <= 0 || N <= 0) return;
  // As the f32 version, each row widened first, so the sums are f32 throughout; dbias is widened,
  // added to and rounded once.
  std::vector<float> sum(static_cast<size_t>(N));
  half_to_f32_array(dtype, dbias, sum.data(), N);
  column_sums_into(sum.data(), M, N, [dtype, dout, N](int64_t i, std::vector<float>& buffer) {
    buffer.resize(static_cast<size_t>(N));
    half_to_f32_array(dtype, dout + i * N, buffer.data(), N);
    return static_cast<const float*>(buffer.data());
  });
  f32_to_half_array(dtype, sum.data(), dbias, N);
}

void linear_epilogue_half(DType dtype, uint16_t* out, uint16_t* pre_gelu, const float* v, bool gelu,
                          const uint16_t* residual, int64_t n) {
  // Chunks of 1024 values keep the f32 intermediates in L1; each chunk reads its residual before
  // writing its out, which makes residual == out safe.
  constexpr int64_t kChunk = 1024;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t len = std::min(kChunk, n - c0);
    float x[kChunk], r[kChunk];
    const float* value = v + c0;
    if (gelu) {
      uint16_t u[kChunk];
      f32_to_half_array(dtype, v + c0, u, len);
      if (pre_gelu) std::memcpy(pre_gelu + c0, u, static_cast<size_t>(len) * sizeof(uint16_t));
      half_to_f32_array(dtype, u, x, len);
#pragma omp simd
      for (int64_t i = 0; i < len; i++) x[i] = gelu_math::gelu(x[i]);
      value = x;
    }
    if (residual) {
      half_to_f32_array(dtype, residual + c0, r, len);
      for (int64_t i = 0; i < len; i++) x[i] = value[i] + r[i];
      value = x;
    }
    f32_to_half_array(dtype, value, out + c0, len);
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
