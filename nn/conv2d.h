// Conv2d: PyTorch's nn.Conv2d on NHWC activations, x (N,H,W,C) -> (N,P,Q,K). The weight keeps
// PyTorch's (out_channels, in_channels/groups, kernel_h, kernel_w) order and names, so a state
// dict loads into torch.nn.Conv2d unchanged (only the activations are channels-last).
#pragma once
#include <cstdint>

#include "nn/module.h"
#include "ops/conv2d.h"

namespace tg {

class Conv2d : public Module {
 public:
  // PyTorch's default init, drawn from `gen` (the default generator when null), weight first:
  // weight kaiming_uniform(a = sqrt(5)), i.e. U(-b, b) with b = gain * sqrt(3 / fan_in) and
  // gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), so b = 1 / sqrt(fan_in); bias U(-1/sqrt(fan_in), ..).
  // fan_in = in_channels / groups * kernel_h * kernel_w.
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_h, int64_t kernel_w, Conv2dParams params = {},
         bool bias = true, Generator* gen = nullptr);

  Tensor forward(const Tensor& x) const;  // x (N,H,W,C) -> (N,P,Q,K)

  int64_t in_channels() const { return weight.size(1) * params.groups; }
  int64_t out_channels() const { return weight.size(0); }

  Conv2dParams params;
  Tensor weight;  // (out_channels, in_channels / groups, kernel_h, kernel_w)
  Tensor bias;    // (out_channels), undefined when built with bias = false
};

}  // namespace tg
