// Differentiable pooling over NHWC feature maps, and the flatten that follows a CNN's last pool.
#pragma once
#include <cstdint>

#include "ops/pool.h"  // Pool2dParams
#include "tensor/tensor.h"

namespace tg {

// x (N,H,W,C) -> (N,P,Q,C), as torch.nn.functional.max_pool2d (kernel, stride, padding, dilation,
// ceil_mode); the gradient goes to the first maximum of each window.
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p);
// As torch.nn.functional.avg_pool2d (kernel, stride, padding, ceil_mode, count_include_pad).
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p);
// x (N,H,W,C) -> (N,out_h,out_w,C), as torch.nn.functional.adaptive_avg_pool2d; (1, 1) is global
// average pooling.
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
// (N,H,W,C) -> (N, C*H*W) in PyTorch's (C,H,W) order, so that a Linear after it has the weights of
// the same PyTorch model; a free reshape when H = W = 1.
Tensor flatten_nhwc(const Tensor& x);

}  // namespace tg
