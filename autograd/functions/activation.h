// Differentiable activations, elementwise on any shape.
#pragma once
#include "tensor/tensor.h"

namespace tg {

// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation GPT-2 uses.
Tensor gelu(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor tanh(const Tensor& x);
// 1 / (1 + exp(-x)), with full relative precision in both tails (sigmoid(-100) = 3.7e-44).
Tensor sigmoid(const Tensor& x);
// x * sigmoid(x) (also called swish), the gate of SwiGLU.
Tensor silu(const Tensor& x);

}  // namespace tg
