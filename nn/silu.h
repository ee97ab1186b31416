// SiLU (swish): x * sigmoid(x), elementwise.
#pragma once
#include "autograd/functions/activation.h"
#include "nn/module.h"

namespace tg {

class SiLU : public Module {
 public:
  Tensor forward(const Tensor& x) const { return silu(x); }
};

}  // namespace tg
