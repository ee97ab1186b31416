// BatchNorm over the last dimension of a row-major (M, C) tensor, f32: per-channel statistics over
// the M rows (an NHWC feature map (N,H,W,C) is M = N*H*W rows of C channels).
//
// The kernels run over fixed chunks of rows and merge the chunks' partial sums in chunk order, so
// their bits depend on M and C only: not on the thread count or the schedule.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// Training: x (M,C) -> out (M,C); mean, rstd (C) of the batch (biased variance, as PyTorch:
// rstd = 1 / sqrt(mean((x - mean)^2) + eps)). running_mean, running_var (C) are updated in place when
// non-null: running = (1 - momentum) * running + momentum * batch, with the unbiased variance
// (times M / (M - 1)), so M must be at least 2. weight, bias (C) may be null (scale 1, shift 0);
// relu: out = max(0, normalised * weight + bias).
void batchnorm_forward_train(float* out, float* mean, float* rstd, float* running_mean, float* running_var,
                             const float* x, const float* weight, const float* bias, int64_t M, int64_t C,
                             float momentum, float eps, bool relu);

// Evaluation: x (M,C) -> out (M,C) normalised with running_mean, running_var (C); mean, rstd (C) are
// written as the statistics used (running_mean and 1 / sqrt(running_var + eps)) for the backward.
void batchnorm_forward_eval(float* out, float* mean, float* rstd, const float* x, const float* weight,
                            const float* bias, const float* running_mean, const float* running_var, int64_t M,
                            int64_t C, float eps, bool relu);

// dx (M,C) +=, dweight (C) +=, dbias (C) += from dout (M,C), x (M,C), weight, bias (C) and the
// forward's mean, rstd (C). Any of dx, dweight, dbias may be null (not wanted); weight and bias may
// be null (bias is only read for relu, whose mask is recomputed from x). training: the statistics
// were the batch's, so dx flows through them too; otherwise they were constants.
// One reduction pass over (x, dout) and one elementwise pass for dx.
void batchnorm_backward(float* dx, float* dweight, float* dbias, const float* dout, const float* x,
                        const float* weight, const float* bias, const float* mean, const float* rstd, int64_t M,
                        int64_t C, bool training, bool relu);

// The pieces of the training forward and backward, for a batch split over several processes
// (dist/sync_batchnorm.h), each with the arithmetic of the kernels above:
// x (M,C) -> mean (C) and m2 (C), the sum of squared deviations from it (variance = m2 / M), in
// double (the statistics of batchnorm_forward_train).
void batchnorm_moments(double* mean, double* m2, const float* x, int64_t M, int64_t C);
// x (M,C) -> out (M,C) normalised with the given mean and rstd (C), scaled, shifted, [relu].
void batchnorm_normalise(float* out, const float* x, const float* weight, const float* bias, const float* mean,
                         const float* rstd, int64_t M, int64_t C, bool relu);
// sum_g, sum_gx (C) = per channel, sum(g) and sum(g * (x - mean)) over the M rows, g the gradient at
// the affine map's output (through the ReLU's mask when relu); dbias = sum_g, dweight = sum_gx * rstd.
void batchnorm_gradient_sums(double* sum_g, double* sum_gx, const float* dout, const float* x, const float* weight,
                             const float* bias, const float* mean, const float* rstd, int64_t M, int64_t C, bool relu);
// dx (M,C) += the training backward's input gradient with the sums taken over `rows` rows in all
// (the statistics were those of rows rows, of which these M are some).
void batchnorm_input_gradient(float* dx, const float* dout, const float* x, const float* weight, const float* bias,
                              const float* mean, const float* rstd, const double* sum_g, const double* sum_gx,
                              double rows, int64_t M, int64_t C, bool relu);

TG_CPU_ISA_END
}  // namespace tg::cpu
