// Differentiable 2-D convolution, NHWC.
#pragma once
#include "ops/conv2d.h"
#include "tensor/tensor.h"

namespace tg {

// x (N,H,W,C), weight (K, C/groups, R, S) (PyTorch's order), bias (K) or undefined Tensor() ->
// (N,P,Q,K), with PyTorch's nn.Conv2d semantics (zero padding, stride, dilation, groups).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p = {});

}  // namespace tg
