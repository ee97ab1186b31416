// BatchNorm over the last dimension of a row-major (M, C) tensor on CUDA: launchers for
// ops/batchnorm.cpp, with the semantics of the CPU kernels (ops/cpu/batchnorm.h): statistics from
// sums of x - x[0] (the first row as the shift), summed in f32 over blocks of 32 rows and the blocks
// in double; biased variance for normalising, the unbiased one for running_var, PyTorch's momentum
// (running = (1 - momentum) running + momentum batch); z = fma(x - mean, weight rstd, bias), then the
// optional ReLU; the backward recomputes the ReLU mask from x with the same fma.
//
// Deterministic, no atomics: the M rows are cut into a number of fixed chunks that depends on M only
// (batchnorm_chunks); one thread sums one channel over one chunk into an f64 partial row of the
// scratch, and a second kernel adds the chunks of each channel in chunk order.
//
// Storage `dtype` (x, out, dx, dout, weight, bias, dweight, dbias) is F32, BF16 or F16; statistics
// (mean, rstd, running_mean, running_var) are f32. Every launcher is asynchronous on cuda::stream().
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// The chunks the M rows are summed in: M / 64 rows at least per chunk, at most 1024 chunks.
int64_t batchnorm_chunks(int64_t M);

// The f32 scratch (in floats) the training forward and the backward need at (M, C): the f64 partial
// sums of every chunk (2 per channel) and 3 per-channel f32 coefficients of the backward.
int64_t batchnorm_scratch_floats(int64_t M, int64_t C);

// Training: x (M,C) -> out (M,C); mean, rstd (C) of the batch; running_mean, running_var (C) updated
// in place when non-null (M >= 2). weight, bias (C) may be null (scale 1, shift 0).
void batchnorm_forward_train(DType dtype, void* out, float* mean, float* rstd, float* running_mean, float* running_var,
                             float* scratch, const void* x, const void* weight, const void* bias, int64_t M, int64_t C,
                             float momentum, float eps, bool relu);

// Evaluation: x (M,C) -> out (M,C) with running_mean, running_var (C); mean, rstd (C) written as the
// statistics used.
void batchnorm_forward_eval(DType dtype, void* out, float* mean, float* rstd, const void* x, const void* weight,
                            const void* bias, const float* running_mean, const float* running_var, int64_t M, int64_t C,
                            float eps, bool relu);

// dx (M,C) +=, dweight (C) +=, dbias (C) += from dout, x (M,C), weight, bias (C), mean, rstd (C).
// Any gradient may be null (not wanted); weight and bias may be null (bias is read only for relu).
void batchnorm_backward(DType dtype, void* dx, void* dweight, void* dbias, float* scratch, const void* dout,
                        const void* x, const void* weight, const void* bias, const float* mean, const float* rstd,
                        int64_t M, int64_t C, bool training, bool relu);

}  // namespace tg::cuda
