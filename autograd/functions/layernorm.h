// Differentiable LayerNorm.
#pragma once
#include "tensor/tensor.h"

namespace tg {

// x (..., C), weight (C), bias (C) -> (..., C): each row of C normalised to mean 0 and variance 1
// (biased variance, as PyTorch), then scaled by weight and shifted by bias. weight and/or bias may
// be undefined Tensor() for no scale / no shift. One float dtype for x, weight, bias and the result
// (bf16/f16 on CUDA compute the statistics in f32).
Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps = 1e-5f);

// The residual add of a transformer block and the LayerNorm after it, as one op with two outputs:
//   sum = x + delta;  normalized = layernorm(sum, weight, bias, eps).
// x and delta (..., C) of one shape (no broadcasting); weight, bias as layernorm's. Equal to
// add then layernorm (bit for bit on the CPU); each of the two outputs may be used or not.
struct AddLayerNorm {
  Tensor sum;
  Tensor normalized;
};
AddLayerNorm add_layernorm(const Tensor& x, const Tensor& delta, const Tensor& weight, const Tensor& bias,
                           float eps = 1e-5f);

}  // namespace tg
