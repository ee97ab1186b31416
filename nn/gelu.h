// GELU, tanh approximation (as in GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
#pragma once
#include "autograd/functions/activation.h"
#include "nn/module.h"

namespace tg {

class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) const { return gelu(x); }
};

}  // namespace tg
