// Differentiable activations, elementwise on any shape.
#pragma once
#include "tensor/tensor.h"

namespace tg {

// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation GPT-2 uses.
Tensor gelu(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor tanh(const Tensor& x);

}  // namespace tg
