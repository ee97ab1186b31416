// bf16 GEMM on row-major matrices: bf16 operands (the uint16_t bits tensor/dtype.h stores), f32
// accumulation, f32 or bf16 output rounded once, to nearest even, on store. The CPU half of mixed
// precision; the same contract as the f32 gemm of ops/cpu/gemm.h, of which this is the bf16 twin.
//
// Two paths, chosen at run time from the CPU's features (gemm_bf16_path()):
//   avx512bf16   vdpbf16ps micro-kernel on operands packed in k pairs (ops/cpu/gemm_bf16_avx512bf16.cpp)
//   f32          any other CPU: packers widen bf16 blocks to f32 (ops/cpu/half_convert.h) and the
//                f32 gemm runs (exact conversion, so the result differs from the native path only
//                by summation order). f16 operands (gemm_half_batched) always take this path.
// Both take every product a*b exactly (8-bit significands multiply exactly into f32) and sum in
// f32, so either has the f32 GEMM's error bound plus, for bf16 output, one bf16 rounding.
// The native path's vdpbf16ps treats subnormal bf16 inputs as zero and flushes subnormal partial
// sums (below 1.2e-38); training values never come near that range.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cpu {

// C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C (M,N), as cpu::gemm: A stored (M,K) with
// row stride lda, or (K,M) when trans_a; B stored (K,N) with row stride ldb, or (N,K) when trans_b;
// C has row stride ldc. beta == 0 never reads C. Any M, N, K >= 0 (K == 0 gives C = beta * C).
// With a bf16 C, v = alpha * acc + beta * C is formed in f32 and rounded to bf16 once.
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc);

// `batch` independent GEMMs as above; item i uses A + i*stride_a, B + i*stride_b, C + i*stride_c
// (strides in elements). A stride of 0 on A or B shares that operand over the batch. C items must
// not overlap.
void gemm_bf16_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                       int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch,
                       int64_t stride_a, int64_t stride_b, int64_t stride_c);
void gemm_bf16_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                       int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc, int64_t batch,
                       int64_t stride_a, int64_t stride_b, int64_t stride_c);

// Either 16-bit dtype behind one call, for the fronts: `dtype` DType::BF16 is gemm_bf16_batched;
// DType::F16 takes f16 operands (and an f16 C) through the f32 path, since this CPU has no f16
// arithmetic (F16C only converts): operands widened exactly as they are packed, the f32 GEMM, an
// f16 C formed in f32 and rounded once. Same contract as gemm_bf16_batched (batch 1, strides 0
// for one GEMM).
void gemm_half_batched(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C,
                       int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c);
void gemm_half_batched(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C,
                       int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c);

// Whether the native path splits this product over K on `threads` threads (each thread sums its
// share of K for the whole of C, then the parts are added in thread order) rather than giving
// each thread a block of C.
bool gemm_bf16_splits_k(int64_t M, int64_t N, int64_t K, int threads);

enum class GemmBf16Path { Avx512Bf16, F32 };

// The run-time feature check behind the choice: true when this CPU executes AVX512_BF16 (and
// the AVX-512 F/BW/VL/DQ the kernel also uses).
bool cpu_has_avx512_bf16();

// The path gemm_bf16 takes now: Avx512Bf16 when the CPU has it and it is not forced off.
GemmBf16Path gemm_bf16_path();
const char* gemm_bf16_path_name(GemmBf16Path path);  // "avx512bf16", "f32"

// Forces the f32 path (true) or returns to the CPU's choice (false), so that tests and benchmarks
// run both paths on one machine. Not thread-safe against GEMMs running at the same time.
void force_gemm_bf16_f32_path(bool force);

}  // namespace tg::cpu
