// Flatten for NHWC feature maps: (N,H,W,C) -> (N, C*H*W) in PyTorch's (C,H,W) order, so that the
// Linear after it holds the same weights as the PyTorch model's (whose maps are NCHW).
#pragma once
#include "autograd/functions/pool.h"
#include "nn/module.h"

namespace tg {

class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) const { return flatten_nhwc(x); }
};

}  // namespace tg
