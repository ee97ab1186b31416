// BatchNorm fronts: check the tensors, then run the kernel for their device. x, out and the
// parameters are f32, bf16 or f16 (staged through the f32 kernels on the CPU, ops/f32_staging.h);
// the statistics are f32 whatever x is, on every device.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace tg::ops {

// x (..., C) -> out (..., C), per-channel statistics over every dimension but the last (an NHWC
// feature map (N,H,W,C): over N*H*W). mean, rstd (C) f32 receive the statistics used, saved for the
// backward. weight and bias are (C) of x's dtype, or undefined (no scale / no shift). running_mean
// and running_var are (C) f32, or undefined in training (batch statistics only).
// training: normalise with the batch's mean and biased variance, and (when defined) update the
// running statistics in place with momentum and the unbiased variance; needs at least 2 rows.
// Otherwise normalise with running_mean and running_var (both required).
// relu: out = max(0, ...), the ReLU that usually follows, fused.
void batchnorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       Tensor& running_mean, Tensor& running_var, bool training, float momentum, float eps, bool relu);

// dx (..., C) +=, dweight (C) +=, dbias (C) += from dout (..., C) and the forward's x, weight, bias,
// mean, rstd, training and relu. Any gradient may be undefined (not wanted). Deterministic.
void batchnorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& bias, const Tensor& mean, const Tensor& rstd, bool training,
                        bool relu);

// The pieces of the training forward and backward for a batch whose rows are split over several
// processes (dist/sync_batchnorm.h merges the per-process sums between them); each does what the
// kernels above do on its part. CPU only: the CUDA kernels fuse these steps, and sync-BN on CUDA
// is not written yet (the fronts name it).
// x (..., C) -> per channel, the mean and the sum of squared deviations from it (m2), in double.
void batchnorm_moments(const Tensor& x, std::vector<double>& mean, std::vector<double>& m2);
// out (..., C) = [relu] (x - mean) * rstd * weight + bias, mean and rstd (C) f32.
void batchnorm_normalise(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& mean,
                         const Tensor& rstd, bool relu);
// Per channel, sum(g) and sum(g * (x - mean)) over x's rows, g = dout through the ReLU's mask.
void batchnorm_gradient_sums(const Tensor& dout, const Tensor& x, const Tensor& weight, const Tensor& bias,
                             const Tensor& mean, const Tensor& rstd, bool relu, std::vector<double>& sum_g,
                             std::vector<double>& sum_gx);
// dx (..., C) += the training backward's input gradient, with sum_g and sum_gx taken over `rows`
// rows in all (x's and the other processes').
void batchnorm_input_gradient(Tensor& dx, const Tensor& dout, const Tensor& x, const Tensor& weight, const Tensor& bias,
                              const Tensor& mean, const Tensor& rstd, const std::vector<double>& sum_g,
                              const std::vector<double>& sum_gx, double rows, bool relu);

}  // namespace tg::ops
