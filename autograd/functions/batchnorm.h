// Differentiable BatchNorm (optionally fused with the ReLU after it).
#pragma once
#include "tensor/tensor.h"

namespace tg {

// x (N,H,W,C) (any rank: statistics over every dim but the last), weight/bias (C) or undefined
// (affine=false). training: batch statistics (biased variance), and running_mean/running_var (C, f32)
// updated in place (when defined) with momentum and the unbiased variance; eval: running statistics.
// relu=true fuses a ReLU after the affine map. Gradients reach x, weight and bias; the running
// statistics are state, not inputs.
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, float momentum = 0.1f, float eps = 1e-5f, bool relu = false);

}  // namespace tg
