// LayerNorm over the last dimension on CUDA: launchers for ops/layernorm.cpp. The numerics are the
// CPU kernel's (ops/cpu/layernorm.h): f32 statistics from two passes over the row (mean, then the
// squared deviations with the CPU's correction for the rounding of the mean), biased variance,
// rstd = 1 / sqrt(var + eps), computed in f32 and rounded once on store.
//
// Mapping: rows of C <= 1024 get one warp each with the row held in registers (read from memory
// once); longer rows get one block each and are re-read from L1/L2 for each pass. 16-byte vector
// accesses when C and every pointer allow them, one element at a time otherwise.
//
// Every launcher is asynchronous on cuda::stream(); nothing here synchronizes with the host.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// inp (N,C) -> out (N,C); mean, rstd (N) f32. inp, out, weight, bias are `dtype` (F32, BF16 or F16);
// weight and bias (C) may be null (scale 1, shift 0).
void layernorm_forward(DType dtype, void* out, float* mean, float* rstd, const void* inp, const void* weight,
                       const void* bias, int64_t N, int64_t C, float eps);

// a, b (N,C) -> residual_out (N,C) = a + b; out (N,C) = layernorm(residual_out); mean, rstd (N) f32.
// residual_out is rounded to `dtype` before it is normalised, so the result is bit for bit what an
// add followed by layernorm_forward computes, with one read of a and b instead of a write and a
// re-read of the sum. weight, bias (C) may be null.
void layernorm_residual_forward(DType dtype, void* residual_out, void* out, float* mean, float* rstd, const void* a,
                                const void* b, const void* weight, const void* bias, int64_t N, int64_t C, float eps);

// The f32 scratch (in floats) that layernorm_backward needs for dweight/dbias at this (N, C): one
// partial row of 2C floats per block of rows. Depends on N and C only, as do the results' bits.
int64_t layernorm_backward_scratch_floats(int64_t N, int64_t C);

// dout, inp (N,C), weight (C), mean, rstd (N) -> dinp (N,C) +=, dweight (C) +=, dbias (C) +=, all
// `dtype` except mean/rstd (f32). Any of dinp, dweight, dbias may be null (not wanted); weight may be
// null (scale 1). scratch holds layernorm_backward_scratch_floats(N, C) floats (unused, may be null,
// when neither dweight nor dbias is wanted).
//
// Deterministic, no atomics: block p owns rows [p*N/P, (p+1)*N/P) and each of its threads owns a
// fixed set of columns, so it sums that chunk's dweight/dbias contributions for its columns in row
// order into the block's partial row of scratch; a second kernel adds the P partial rows of every
// column in a fixed order (32 strided groups in p order, then the groups in order) into dweight/dbias.
void layernorm_backward(DType dtype, void* dinp, void* dweight, void* dbias, float* scratch, const void* dout,
                        const void* inp, const void* weight, const float* mean, const float* rstd, int64_t N,
                        int64_t C);

}  // namespace tg::cuda
