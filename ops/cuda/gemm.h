// CUDA launchers of the GEMM family: the matrix product behind Linear, attention and matmul, with
// the Linear epilogues (bias, GELU, residual) fused in, plus the two bias helpers of Linear.
//
// Kernels (ops/cuda/gemm_tensorcore.cu, gemm_simt.cu, gemm.cu):
//   bf16 / f16  tensor cores: mma.sync m16n8k16 with f32 accumulators, a 4-stage cp.async pipeline
//               over 128x128x32 tiles. Each operand is loaded with 16-byte cp.async when it is
//               "vectorizable" (below), otherwise element by element into the same shared layout:
//               any M, N, K, leading dimension and alignment works, only the speed differs.
//   f32         a SIMT register-tiled kernel (128x128 tile, 8x8 outputs per thread, f32 FMA).
// All launch on cuda::stream() and never synchronize the host. Accumulation order is fixed, so a
// GEMM gives bitwise the same result on every run.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// What happens to each output element after the product, in this order:
//   v = alpha * (op(A) @ op(B))[i,j] + beta * C[i,j]    beta == 0 never reads C (NaN in C is ignored)
//   v += bias[j]                                          when bias
//   when gelu: v = round(v) to the dtype; pre_gelu[i,j] = v (when pre_gelu); v = gelu(v)
//   v += residual[i,j]                                    when residual
//   C[i,j] = round(v)
// GELU is the tanh approximation of ops/cpu/activation. Rounding v before the GELU makes the fused
// op exactly gelu(linear(x)) of the unfused path, and the forward consistent with a backward that
// differentiates at the stored pre-activation.
// All pointers hold elements of the GEMM's dtype. bias (N) is shared by every batch item;
// pre_gelu and residual are (M,N) with the row stride ldc and batch stride stride_c of C.
// residual may be C itself (read before written, element by element); pre_gelu must not overlap C.
struct GemmEpilogue {
  const void* bias = nullptr;
  bool gelu = false;
  void* pre_gelu = nullptr;  // only with gelu
  const void* residual = nullptr;
};

// C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C (M,N), then the epilogue; row-major as in
// ops/cpu/gemm.h: A is stored (M,K) with row stride lda, or (K,M) when trans_a; B is (K,N) with row
// stride ldb, or (N,K) when trans_b; C has row stride ldc. A, B and C (and the epilogue tensors)
// are all of `dtype` (F32, BF16 or F16); products accumulate in f32 and C is rounded once.
// Any M, N, K >= 0 (K == 0 or alpha == 0 never reads A or B).
void gemm(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
          int64_t lda, const void* B, int64_t ldb, float beta, void* C, int64_t ldc,
          const GemmEpilogue& epilogue = GemmEpilogue());

// `batch` independent GEMMs as above; item i uses A + i*stride_a, B + i*stride_b, C + i*stride_c
// (strides in elements; 0 on A or B shares that operand across the batch; C items must not overlap).
void gemm_batched(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const void* A, int64_t lda, const void* B, int64_t ldb, float beta, void* C, int64_t ldc,
                  int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                  const GemmEpilogue& epilogue = GemmEpilogue());

// True when the tensor-core kernel loads this bf16/f16 operand with 16-byte cp.async: its base
// pointer is 16-byte aligned and its row stride (and batch stride, when batch > 1) is a multiple
// of 8 elements. Otherwise the same kernel loads it element by element (the general path).
// Exposed so that tests can assert which path a case exercises.
bool gemm_operand_vectorizable(DType dtype, const void* ptr, int64_t ld, int64_t batch, int64_t batch_stride);

// bias (N) -> out (M,N), every row = bias.
void broadcast_rows(DType dtype, void* out, const void* bias, int64_t M, int64_t N);

// dout (M,N) -> dbias (N) += column sums of dout. Deterministic: per-block partial sums of row
// bands into `scratch` (f32, column_sums_scratch_floats(M, N) elements), then one pass adding the
// partials in band order, in f32, rounding once into dbias.
int64_t column_sums_scratch_floats(int64_t M, int64_t N);
void column_sums_accumulate(DType dtype, void* dbias, const void* dout, int64_t M, int64_t N, float* scratch);

}  // namespace tg::cuda
