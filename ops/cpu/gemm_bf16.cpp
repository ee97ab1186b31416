// gemm_bf16's front: the run-time choice of path, the threading of the AVX512_BF16 kernel (the f32
// GEMM's policy: a grid of disjoint C blocks, or whole batch items per thread), and the f32 path
// (also the whole of the f16 GEMM), whose packers widen each cache block of A or B to f32 and hand
// it to the f32 GEMM's packer: no f32 copy of a whole operand, only of one block per thread and
// of a band of a 16-bit C's rows.
#include "ops/cpu/gemm_bf16.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/cpu/gemm.h"
#include "ops/cpu/gemm_bf16_avx512bf16.h"
#include "ops/cpu/half_convert.h"
#include "tensor/dtype.h"

namespace tg::cpu {

namespace {

bool force_f32 = false;

// Below this many flops a GEMM takes microseconds on one core, the order of waking a second
// OpenMP thread (as in gemm.cpp).
constexpr double kMinParallelFlops = 2.0e6;

inline float widen(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// C = beta * C for K == 0 or alpha == 0; beta == 0 writes zeros (never 0 * NaN).
void scale_c(const GemmBf16Problem& p) {
  for (int64_t i = 0; i < p.M; i++)
    for (int64_t j = 0; j < p.N; j++) {
      if (p.c_f32) {
        float& c = p.c_f32[i * p.ldc + j];
        c = p.beta == 0.0f ? 0.0f : p.beta * c;
      } else {
        uint16_t& c = p.c_bf16[i * p.ldc + j];
        c = p.beta == 0.0f ? 0 : f32_to_bf16(p.beta * widen(c));
      }
    }
}

// ---- the AVX512_BF16 path ---------------------------------------------------------------------

int threads_for(double flops) {
  if (omp_in_parallel() || flops < kMinParallelFlops) return 1;
  return omp_get_max_threads();
}

// Splits `threads` into rows x cols over C keeping each thread's block as square as the shape
// allows and the register tiles whole (gemm.cpp's thread_grid, on the bf16 tile).
void thread_grid(int64_t M, int64_t N, int64_t K, int threads, int& grid_rows, int& grid_cols) {
  const int64_t row_tiles = (M + kGemmBf16MR - 1) / kGemmBf16MR, col_tiles = (N + kGemmBf16NR - 1) / kGemmBf16NR;
  double best = 0;
  for (int rows = 1; rows <= threads; rows++) {
    if (threads % rows) continue;
    const int cols = threads / rows;
    const double m = static_cast<double>((row_tiles + rows - 1) / rows * kGemmBf16MR);
    const double n = static_cast<double>((col_tiles + cols - 1) / cols * kGemmBf16NR);
    const double cost = m * n * static_cast<double>(K) + 8.0 * (m + n) * static_cast<double>(K);
    if (rows == 1 || cost < best) {
      best = cost;
      grid_rows = rows;
      grid_cols = cols;
    }
  }
}

void native_one_thread(const GemmBf16Problem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  if (p.K <= 0 || p.alpha == 0.0f) return scale_c(p);
  gemm_bf16_block_avx512bf16(p, 0, p.M, 0, p.N);
}

// One thread's share of a product split over K: pairs [q0, q1) of the ceil(K/2) k pairs (whole
// pairs, so that only the last part can end on a padded one), as an f32 product with alpha 1 and
// beta 0 into its (M, N) part.
void k_part(const GemmBf16Problem& p, int part, int parts, float* out) {
  const int64_t pairs = (p.K + 1) / 2;
  const int64_t k0 = 2 * (pairs * part / parts), k1 = std::min(p.K, 2 * (pairs * (part + 1) / parts));
  GemmBf16Problem q = p;
  q.K = k1 - k0;
  q.A += p.trans_a ? k0 * p.lda : k0;
  q.B += p.trans_b ? k0 : k0 * p.ldb;
  q.alpha = 1.0f;
  q.beta = 0.0f;
  q.c_f32 = out;
  q.c_bf16 = nullptr;
  q.ldc = p.N;
  gemm_bf16_block_avx512bf16(q, 0, q.M, 0, q.N);
}

// A product split over K: each thread sums its share of K for the whole of C into its own f32
// part, then each sums a band of C's rows over the parts, in thread order.
void native_split_k(const GemmBf16Problem& p, int threads) {
  // The calling thread's buffer, kept between calls; the team reaches it through `parts` (a
  // thread_local named inside the region would be each thread's own).
  thread_local std::vector<float> buffer;
  buffer.resize(static_cast<size_t>(threads * p.M * p.N));
  float* parts = buffer.data();
#pragma omp parallel num_threads(threads)
  {
    const int team = omp_get_num_threads(), id = omp_get_thread_num();
    k_part(p, id, team, parts + id * p.M * p.N);
#pragma omp barrier
    gemm_bf16_sum_k_parts_avx512bf16(p, parts, team, p.M * id / team, p.M * (id + 1) / team);
  }
}

void native(const GemmBf16Problem& p) {
  const int threads = threads_for(2.0 * static_cast<double>(p.M) * static_cast<double>(p.N) * static_cast<double>(p.K));
  if (threads <= 1 || p.K <= 0 || p.alpha == 0.0f) return native_one_thread(p);
  if (gemm_bf16_splits_k(p.M, p.N, p.K, threads)) return native_split_k(p, threads);
  #pragma omp parallel num_threads(threads)
  {
    // The team may be smaller than asked for: plan with what we got.
    const int team = omp_get_num_threads(), id = omp_get_thread_num();
    int grid_rows = 1, grid_cols = team;
    thread_grid(p.M, p.N, p.K, team, grid_rows, grid_cols);
    const int64_t row_tiles = (p.M + kGemmBf16MR - 1) / kGemmBf16MR, col_tiles = (p.N + kGemmBf16NR - 1) / kGemmBf16NR;
    const int gr = id / grid_cols, gc = id % grid_cols;
    const int64_t i0 = std::min(p.M, row_tiles * gr / grid_rows * kGemmBf16MR);
    const int64_t i1 = std::min(p.M, row_tiles * (gr + 1) / grid_rows * kGemmBf16MR);
    const int64_t j0 = std::min(p.N, col_tiles * gc / grid_cols * kGemmBf16NR);
    const int64_t j1 = std::min(p.N, col_tiles * (gc + 1) / grid_cols * kGemmBf16NR);
    if (i1 > i0 && j1 > j0) gemm_bf16_block_avx512bf16(p, i0, i1 - i0, j0, j1 - j0);
  }
}

// ---- the f32 path -----------------------------------------------------------------------------

// The block of a stored 16-bit matrix (rows x cols from (r0, c0), row stride ld) widened into
// `block` (rows, cols), row by row with half_convert's vector conversions. Exact.
const float* widen_block(DType dtype, const uint16_t* x, int64_t ld, int64_t r0, int64_t rows, int64_t c0, int64_t cols,
                         std::vector<float>& block) {
  block.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; r++) convert_half_to_f32(dtype, x + (r0 + r) * ld + c0, block.data() + r * cols, cols);
  return block.data();
}

// op(A) in bf16 or f16 as an f32 GEMM packer: the block is widened to f32, then packed by the f32
// GEMM's own packer (vectorised, transposes included). The block buffer is per thread: packers
// run on several threads at once.
class HalfPackA : public GemmPackA {
 public:
  HalfPackA(DType dtype, bool trans, const uint16_t* a, int64_t ld) : dtype_(dtype), trans_(trans), a_(a), ld_(ld) {}
  void pack(int64_t i0, int64_t m, int64_t p0, int64_t k, int mr, float* a_pack) const override {
    thread_local std::vector<float> block;
    // Stored (M,K), or (K,M) when trans: the block is (m,k) or (k,m), packed from its origin.
    const float* wide = trans_ ? widen_block(dtype_, a_, ld_, p0, k, i0, m, block)
                               : widen_block(dtype_, a_, ld_, i0, m, p0, k, block);
    gemm_pack_matrix_a(trans_, wide, trans_ ? m : k, 0, m, 0, k, mr, a_pack);
  }

 private:
  DType dtype_;
  bool trans_;
  const uint16_t* a_;
  int64_t ld_;
};

// op(B) likewise: stored (K,N), or (N,K) when trans.
class HalfPackB : public GemmPackB {
 public:
  HalfPackB(DType dtype, bool trans, const uint16_t* b, int64_t ld) : dtype_(dtype), trans_(trans), b_(b), ld_(ld) {}
  void pack(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr, float* b_pack) const override {
    thread_local std::vector<float> block;
    const float* wide = trans_ ? widen_block(dtype_, b_, ld_, j0, n, p0, k, block)
                               : widen_block(dtype_, b_, ld_, p0, k, j0, n, block);
    gemm_pack_matrix_b(trans_, wide, trans_ ? k : n, 0, k, 0, n, nr, b_pack);
  }

 private:
  DType dtype_;
  bool trans_;
  const uint16_t* b_;
  int64_t ld_;
};

// `dtype` says what p's 16-bit operands (and a 16-bit C, in c_bf16) hold: bf16 or f16 bits.
void f32_path(const GemmBf16Problem& p, DType dtype) {
  if (p.M <= 0 || p.N <= 0) return;
  const HalfPackB b(dtype, p.trans_b, p.B, p.ldb);
  if (p.c_f32)
    return gemm_packed(p.M, p.N, p.K, p.alpha, HalfPackA(dtype, p.trans_a, p.A, p.lda), b, p.beta, p.c_f32, p.ldc);
  // A 16-bit C: form v = alpha * acc + beta * C in f32, then round once; a band of rows at a time,
  // so that the f32 copy stays about 4 MiB (in cache) however large C is.
  const int64_t band = std::max<int64_t>(8 * int64_t(kGemmMaxMR), (int64_t(1) << 20) / std::max<int64_t>(p.N, 1));
  // Kept per thread between calls: fresh pages for every GEMM would cost more than the conversions.
  thread_local std::vector<float> c;
  c.resize(static_cast<size_t>(std::min(band, p.M) * p.N));
  for (int64_t i0 = 0; i0 < p.M; i0 += band) {
    const int64_t rows = std::min(band, p.M - i0);
    uint16_t* c16 = p.c_bf16 + i0 * p.ldc;
    if (p.beta != 0.0f)
      for (int64_t i = 0; i < rows; i++) convert_half_to_f32(dtype, c16 + i * p.ldc, c.data() + i * p.N, p.N);
    const HalfPackA a_band(dtype, p.trans_a, p.trans_a ? p.A + i0 : p.A + i0 * p.lda, p.lda);
    gemm_packed(rows, p.N, p.K, p.alpha, a_band, b, p.beta, c.data(), p.N);
    for (int64_t i = 0; i < rows; i++) convert_f32_to_half(dtype, c.data() + i * p.N, c16 + i * p.ldc, p.N);
  }
}

// ---- batches ----------------------------------------------------------------------------------

void run(GemmBf16Problem p, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
         DType dtype = DType::BF16) {
  if (batch <= 0 || p.M <= 0 || p.N <= 0) return;
  auto item = [&](int64_t i) {
    GemmBf16Problem q = p;
    q.A += i * stride_a;
    q.B += i * stride_b;
    if (q.c_f32) q.c_f32 += i * stride_c;
    else q.c_bf16 += i * stride_c;
    return q;
  };
  if (dtype == DType::F16 || gemm_bf16_path() == GemmBf16Path::F32) {
    for (int64_t i = 0; i < batch; i++) f32_path(item(i), dtype);
    return;
  }
  const int threads = threads_for(2.0 * static_cast<double>(p.M) * static_cast<double>(p.N) *
                                  static_cast<double>(p.K) * static_cast<double>(batch));
  // Whole items per thread when they divide evenly or are plentiful (attention's B*NH small
  // GEMMs); otherwise each item uses every thread in turn.
  if (threads > 1 && (batch % threads == 0 || batch >= 4 * threads)) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < batch; i++) native_one_thread(item(i));
    return;
  }
  for (int64_t i = 0; i < batch; i++) native(item(i));
}

GemmBf16Problem problem(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                        int64_t lda, const uint16_t* B, int64_t ldb, float beta, int64_t ldc) {
  return GemmBf16Problem{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, nullptr, nullptr, ldc};
}

}  // namespace

bool cpu_has_avx512_bf16() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return has;
}

GemmBf16Path gemm_bf16_path() {
  return cpu_has_avx512_bf16() && !force_f32 ? GemmBf16Path::Avx512Bf16 : GemmBf16Path::F32;
}

const char* gemm_bf16_path_name(GemmBf16Path path) {
  return path == GemmBf16Path::Avx512Bf16 ? "avx512bf16" : "f32";
}

void force_gemm_bf16_f32_path(bool force) { force_f32 = force; }

// A grid of C blocks has each thread pack all of K for its rows of op(A) and for all of op(B)
// (or the reverse); split over K, each packs its share of K for both, (M + N) K / T elements
// against (M / T + N) K, and the parts cost T f32 copies of C, written and summed. One thread's
// share, measured single-threaded (best of 3, on a loaded machine), split against grid: 384 x 384
// x 16384 (attn_proj's weight gradient) 402 against 367 GFLOP/s, 65 x 384 x 16384 (lm_head's) 375
// against 356, 384 x 1536 x 16384 407 against 399, but 1536 x 384 x 16384 395 against 407. So the
// split is taken where K is at least 16 times C's longer side, where it won. Each part gets at
// least one full K block, and the parts stay within 8 MiB, in cache for the sum and small beside
// the model (they are kept between calls).
bool gemm_bf16_splits_k(int64_t M, int64_t N, int64_t K, int threads) {
  constexpr int64_t kMinKPerThread = 1536, kMaxPartsBytes = int64_t(8) << 20;
  return threads > 1 && K >= 16 * std::max(M, N) && K >= threads * kMinKPerThread &&
         int64_t(4) * threads * M * N <= kMaxPartsBytes;
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  GemmBf16Problem p = problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, ldc);
  p.c_f32 = C;
  run(p, 1, 0, 0, 0);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc) {
  GemmBf16Problem p = problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, ldc);
  p.c_bf16 = C;
  run(p, 1, 0, 0, 0);
}

void gemm_bf16_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                       int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch,
                       int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  GemmBf16Problem p = problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, ldc);
  p.c_f32 = C;
  run(p, batch, stride_a, stride_b, stride_c);
}

void gemm_bf16_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                       int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc, int64_t batch,
                       int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  GemmBf16Problem p = problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, ldc);
  p.c_bf16 = C;
  run(p, batch, stride_a, stride_b, stride_c);
}

void gemm_half_batched(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C,
                       int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  GemmBf16Problem p = problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, ldc);
  p.c_f32 = C;
  run(p, batch, stride_a, stride_b, stride_c, dtype);
}

void gemm_half_batched(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C,
                       int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  GemmBf16Problem p = problem(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, ldc);
  p.c_bf16 = C;
  run(p, batch, stride_a, stride_b, stride_c, dtype);
}

}  // namespace tg::cpu
