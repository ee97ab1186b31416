// Sigmoid: 1 / (1 + exp(-x)), elementwise.
#pragma once
#include "autograd/functions/activation.h"
#include "nn/module.h"

namespace tg {

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) const { return sigmoid(x); }
};

}  // namespace tg
