// gemm_bf16's front: the run-time choice of path, the threading of the AVX512_BF16 kernel (the f32
// GEMM's policy: a grid of disjoint C blocks, or whole batch items per thread), and the f32 path,
// which packs bf16 straight into the f32 GEMM's panels (GemmPackA / GemmPackB), so it needs no
// f32 copy of A or B, only of a band of a bf16 C's rows.
#include "ops/cpu/gemm_bf16.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/cpu/gemm.h"
#include "ops/cpu/gemm_bf16_avx512bf16.h"
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

void native(const GemmBf16Problem& p) {
  const int threads = threads_for(2.0 * static_cast<double>(p.M) * static_cast<double>(p.N) * static_cast<double>(p.K));
  if (threads <= 1 || p.K <= 0 || p.alpha == 0.0f) return native_one_thread(p);
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

// op(A) in bf16 as an f32 GEMM packer: sliver s of a_pack holds rows i0 + s*MR.., k-major (gemm.h).
class Bf16PackA : public GemmPackA {
 public:
  Bf16PackA(bool trans, const uint16_t* a, int64_t ld) : trans_(trans), a_(a), ld_(ld) {}
  void pack(int64_t i0, int64_t m, int64_t p0, int64_t k, int mr, float* a_pack) const override {
    for (int64_t s = 0; s * mr < m; s++) {
      float* sliver = a_pack + s * mr * k;
      const int64_t rows = std::min<int64_t>(mr, m - s * mr), i = i0 + s * mr;
      // Loops run along the stored rows, so every read is unit stride.
      if (trans_) {
        for (int64_t p = 0; p < k; p++)
          for (int64_t r = 0; r < mr; r++)
            sliver[p * mr + r] = r < rows ? widen(a_[(p0 + p) * ld_ + i + r]) : 0.0f;
      } else {
        for (int64_t r = 0; r < mr; r++)
          for (int64_t p = 0; p < k; p++) sliver[p * mr + r] = r < rows ? widen(a_[(i + r) * ld_ + p0 + p]) : 0.0f;
      }
    }
  }

 private:
  bool trans_;
  const uint16_t* a_;
  int64_t ld_;
};

// op(B) in bf16 as an f32 GEMM packer: sliver s of b_pack holds columns j0 + s*NR.., k-major.
class Bf16PackB : public GemmPackB {
 public:
  Bf16PackB(bool trans, const uint16_t* b, int64_t ld) : trans_(trans), b_(b), ld_(ld) {}
  void pack(int64_t p0, int64_t k, int64_t j0, int64_t n, int nr, float* b_pack) const override {
    for (int64_t s = 0; s * nr < n; s++) {
      float* sliver = b_pack + s * nr * k;
      const int64_t cols = std::min<int64_t>(nr, n - s * nr), j = j0 + s * nr;
      if (trans_) {
        // 64 k at a time, so the 64 sliver rows being filled column by column stay in L1.
        for (int64_t q = 0; q < k; q += 64)
          for (int64_t c = 0; c < nr; c++)
            for (int64_t p = q; p < std::min<int64_t>(k, q + 64); p++)
              sliver[p * nr + c] = c < cols ? widen(b_[(j + c) * ld_ + p0 + p]) : 0.0f;
      } else {
        for (int64_t p = 0; p < k; p++)
          for (int64_t c = 0; c < nr; c++)
            sliver[p * nr + c] = c < cols ? widen(b_[(p0 + p) * ld_ + j + c]) : 0.0f;
      }
    }
  }

 private:
  bool trans_;
  const uint16_t* b_;
  int64_t ld_;
};

void f32_path(const GemmBf16Problem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  const Bf16PackB b(p.trans_b, p.B, p.ldb);
  if (p.c_f32) return gemm_packed(p.M, p.N, p.K, p.alpha, Bf16PackA(p.trans_a, p.A, p.lda), b, p.beta, p.c_f32, p.ldc);
  // A bf16 C: form v = alpha * acc + beta * C in f32, then round once; a band of rows at a time,
  // so that the f32 copy stays about 4 MiB (in cache) however large C is.
  const int64_t band = std::max<int64_t>(8 * int64_t(kGemmMaxMR), (int64_t(1) << 20) / std::max<int64_t>(p.N, 1));
  std::vector<float> c(static_cast<size_t>(std::min(band, p.M) * p.N));
  for (int64_t i0 = 0; i0 < p.M; i0 += band) {
    const int64_t rows = std::min(band, p.M - i0);
    uint16_t* c16 = p.c_bf16 + i0 * p.ldc;
    if (p.beta != 0.0f)
      for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < p.N; j++) c[i * p.N + j] = widen(c16[i * p.ldc + j]);
    const Bf16PackA a_band(p.trans_a, p.trans_a ? p.A + i0 : p.A + i0 * p.lda, p.lda);
    gemm_packed(rows, p.N, p.K, p.alpha, a_band, b, p.beta, c.data(), p.N);
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j = 0; j < p.N; j++) c16[i * p.ldc + j] = f32_to_bf16(c[i * p.N + j]);
  }
}

// ---- batches ----------------------------------------------------------------------------------

void run(GemmBf16Problem p, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  if (batch <= 0 || p.M <= 0 || p.N <= 0) return;
  auto item = [&](int64_t i) {
    GemmBf16Problem q = p;
    q.A += i * stride_a;
    q.B += i * stride_b;
    if (q.c_f32) q.c_f32 += i * stride_c;
    else q.c_bf16 += i * stride_c;
    return q;
  };
  if (gemm_bf16_path() == GemmBf16Path::F32) {
    for (int64_t i = 0; i < batch; i++) f32_path(item(i));
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

}  // namespace tg::cpu
