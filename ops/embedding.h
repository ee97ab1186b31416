// Embedding fronts: check the tensors (including every id), then run the kernel for their device.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

// ids (...) i32, weight (V, C) -> out (..., C), weight's dtype (f32 on the CPU; f32, bf16 or f16 on
// CUDA). Throws naming the first id outside [0, V), its position and V (checked on the host for
// both devices).
void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& weight);

// dweight (V, C) += the rows of dout (..., C) scattered by ids (...); one dtype. Deterministic on both
// devices (bit-identical run to run).
void embedding_backward(Tensor& dweight, const Tensor& dout, const Tensor& ids);

}  // namespace tg::ops
