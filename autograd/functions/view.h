// Differentiable views: same data, new shape or strides. Each backward adds the output gradient,
// viewed back into the input's layout, into the input's gradient.
#pragma once
#include "tensor/tensor.h"

namespace tg {

Tensor reshape(const Tensor& x, const Shape& shape);  // one dimension may be -1
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor unsqueeze(const Tensor& x, int64_t dim);  // a new dimension of size 1 at dim (-1: last)
Tensor contiguous(const Tensor& x);

}  // namespace tg
