// LayerNorm fronts: check the tensors, then run the kernel for their device.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

// x (..., C) -> out (..., C); mean, rstd (numel / C), saved for the backward. weight and bias are (C)
// or undefined (no scale, no shift). All f32 and contiguous.
void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       float eps);

// dx (..., C) +=, dweight (C) +=, dbias (C) += from dout (..., C) and the forward's x, weight, mean,
// rstd. Any gradient may be undefined (not wanted); weight may be undefined (no scale).
void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd);

}  // namespace tg::ops
