// Pooling layers over NHWC feature maps: torch.nn.MaxPool2d, AvgPool2d and AdaptiveAvgPool2d.
#pragma once
#include <cstdint>
#include <string>

#include "autograd/functions/pool.h"
#include "nn/module.h"

namespace tg {

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const Pool2dParams& params) : params(params) {}
  Tensor forward(const Tensor& x) const { return max_pool2d(x, params); }  // (N,H,W,C) -> (N,P,Q,C)
  Pool2dParams params;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const Pool2dParams& params) : params(params) {}
  Tensor forward(const Tensor& x) const { return avg_pool2d(x, params); }  // (N,H,W,C) -> (N,P,Q,C)
  Pool2dParams params;
};

class AdaptiveAvgPool2d : public Module {
 public:
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w) : out_h(out_h), out_w(out_w) {
    TG_CHECK(out_h >= 1 && out_w >= 1, "AdaptiveAvgPool2d: the output size must be at least (1, 1), found (" +
                                           std::to_string(out_h) + ", " + std::to_string(out_w) + ")");
  }
  // (N,H,W,C) -> (N,out_h,out_w,C)
  Tensor forward(const Tensor& x) const { return adaptive_avg_pool2d(x, out_h, out_w); }
  int64_t out_h, out_w;
};

}  // namespace tg
