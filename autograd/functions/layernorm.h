// Differentiable LayerNorm.
#pragma once
#include "tensor/tensor.h"

namespace tg {

// x (..., C), weight (C), bias (C) -> (..., C): each row of C normalised to mean 0 and variance 1
// (biased variance, as PyTorch), then scaled by weight and shifted by bias. weight and/or bias may
// be undefined Tensor() for no scale / no shift. One float dtype for x, weight, bias and the result
// (bf16/f16 on CUDA compute the statistics in f32).
Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps = 1e-5f);

}  // namespace tg
