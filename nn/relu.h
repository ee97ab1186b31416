// ReLU: max(0, x), elementwise.
#pragma once
#include "autograd/functions/activation.h"
#include "nn/module.h"

namespace tg {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) const { return relu(x); }
};

}  // namespace tg
