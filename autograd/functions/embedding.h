// Differentiable embedding lookup.
#pragma once
#include "tensor/tensor.h"

namespace tg {

// ids i32 of any shape (typically (B, T)), weight (V, C) -> (ids.shape..., C) in weight's dtype: row
// ids[...] of weight.
// Throws tg::Error naming an id outside [0, V), its position and V. Only weight gets a gradient: the
// rows of the output gradient added into the rows of dweight they came from (a repeated id gets
// the sum).
Tensor embedding(const Tensor& ids, const Tensor& weight);

}  // namespace tg
