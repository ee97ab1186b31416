// Embedding fronts: check the tensors (including every id), then run the kernel for their device.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

// ids (...) i32, weight (V, C) f32 -> out (..., C). Throws naming the first id outside [0, V), its
// position and V.
void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& weight);

// dweight (V, C) += the rows of dout (..., C) scattered by ids (...). Deterministic.
void embedding_backward(Tensor& dweight, const Tensor& dout, const Tensor& ids);

}  // namespace tg::ops
