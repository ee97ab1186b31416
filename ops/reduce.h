// Fronts for the sum reductions (sum and mean are one kernel with a scale of 1 or 1/size). Input and
// output share one dtype: f32 on the CPU; f32, bf16 or f16 on CUDA, where the sums run in f32 and
// round once, deterministically.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

// out (one element, any shape) = scale * sum of every element of inp
void sum_forward(Tensor& out, const Tensor& inp, float scale = 1.0f);
// dinp (inp's shape) += scale * dout (one element)
void sum_backward(Tensor& dinp, const Tensor& dout, float scale = 1.0f);
// out = scale * sum of inp over `dim` (negative counts from the end); out has inp's shape with that
// dimension removed or kept as 1 (either is accepted)
void sum_dim_forward(Tensor& out, const Tensor& inp, int64_t dim, float scale = 1.0f);
// dinp (inp's shape) += scale * dout broadcast along `dim`
void sum_dim_backward(Tensor& dinp, const Tensor& dout, int64_t dim, float scale = 1.0f);

// x summed down to `shape`, a shape x broadcasts from (the backward of broadcasting): sums over the
// leading dimensions x has in excess and over those where `shape` has 1 and x does not. Returns a
// contiguous tensor of `shape` (x itself when the shapes already match and x is contiguous).
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace tg::ops
