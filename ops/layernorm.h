// LayerNorm fronts: check the tensors, then run the kernel for their device.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

// x (..., C) -> out (..., C); mean, rstd (numel / C) f32, saved for the backward. weight and bias are
// (C) or undefined (no scale, no shift). x, out, weight, bias share one float dtype (f32 on the CPU;
// f32, bf16 or f16 on CUDA); all contiguous.
void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       float eps);

// The residual add fused with the LayerNorm that follows it in a transformer block:
// residual (..., C) = a + b; out (..., C) = layernorm(residual); mean, rstd as above. Equal to
// add_forward then layernorm_forward (bit for bit on the CPU), in one kernel that reads a and b once.
// Its backward is layernorm_backward (autograd/functions/layernorm.cpp's add_layernorm).
void add_layernorm(Tensor& residual, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& a, const Tensor& b,
                   const Tensor& weight, const Tensor& bias, float eps);

// dx (..., C) +=, dweight (C) +=, dbias (C) += from dout (..., C) and the forward's x, weight, mean,
// rstd. Any gradient may be undefined (not wanted); weight may be undefined (no scale). Deterministic
// on both devices.
void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd);

}  // namespace tg::ops
