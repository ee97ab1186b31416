// Differentiable sums and means. The full reductions return a scalar tensor of shape (); the
// per-dimension ones drop the dimension, or keep it as size 1 with keepdim. The result has x's dtype
// (in bf16/f16 the sum runs in f32 and rounds once).
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg {

Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);  // negative dim counts from the end
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);

}  // namespace tg
