// Single-precision GEMM on row-major matrices, BLIS-style (packed panels + register micro-kernel),
// parallel over macro-tiles with OpenMP. The one matmul kernel behind Linear, attention and conv.
#pragma once
#include <cstdint>

namespace tg::cpu {

// C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C (M,N); every matrix row-major.
// A is stored (M,K) with row stride lda, or (K,M) when trans_a; B is (K,N) with row stride ldb, or
// (N,K) when trans_b; C has row stride ldc. Transposes cost nothing extra: they are read in packing.
// beta == 0 writes C without reading it, so NaN or garbage in C does not leak into the result.
// Any M, N, K >= 0 works (K == 0 gives C = beta * C).
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// `batch` independent GEMMs as above; item i uses A + i*stride_a, B + i*stride_b, C + i*stride_c.
// A stride of 0 on A or B broadcasts that operand over the batch. C items must not overlap.
void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch,
                  int64_t stride_a, int64_t stride_b, int64_t stride_c);

// out (M,N) row i = bias (N), for every row: the starting value of a Linear output before its
// GEMM accumulates (beta = 1) on top.
void broadcast_rows(float* out, const float* bias, int64_t M, int64_t N);

// dbias (N) += column sums of dout (M,N): the bias gradient of Linear.
void column_sums_accumulate(float* dbias, const float* dout, int64_t M, int64_t N);

}  // namespace tg::cpu
