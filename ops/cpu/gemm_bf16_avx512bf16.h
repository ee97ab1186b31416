// The AVX512_BF16 kernel of gemm_bf16 (ops/cpu/gemm_bf16.h), compiled with the AVX-512 BF16 flags
// and called only after cpu_has_avx512_bf16() said yes. The front (gemm_bf16.cpp) owns the
// threading; this file owns one thread's block of C.
#pragma once
#include <cstdint>

namespace tg::cpu {

// Register tile of the vdpbf16ps micro-kernel: 14 rows x 32 columns of C in 28 zmm accumulators,
// the same tile as the f32 AVX-512 kernel (each k step now covers a pair of k).
constexpr int kGemmBf16MR = 14, kGemmBf16NR = 32;

// One GEMM as gemm_bf16 documents it. Exactly one of c_f32 / c_bf16 is set.
struct GemmBf16Problem {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha;
  const uint16_t* A;
  int64_t lda;
  const uint16_t* B;
  int64_t ldb;
  float beta;
  float* c_f32;
  uint16_t* c_bf16;
  int64_t ldc;
};

// The block C[i0 : i0+m, j0 : j0+n] of `p`, on the calling thread, with its own packing buffers.
// Needs m, n, K >= 1 and alpha != 0 (the front handles the degenerate cases).
void gemm_bf16_block_avx512bf16(const GemmBf16Problem& p, int64_t i0, int64_t m, int64_t j0, int64_t n);

// The last step of a product split over K: rows [r0, r1) of p's C become
// alpha * (partials[0] + ... + partials[count - 1]) + beta * C, the sum taken in that order (so the
// result depends only on `count`), formed in f32 and, for a bf16 C, rounded once. Each partial is
// an (M, N) f32 matrix of row stride N; partial t starts at partials + t * M * N.
void gemm_bf16_sum_k_parts_avx512bf16(const GemmBf16Problem& p, const float* partials, int count, int64_t r0,
                                      int64_t r1);

}  // namespace tg::cpu
