// Gradient clipping by the global L2 norm.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace tg {

// PyTorch's clip_grad_norm_: the norm of all gradients taken together (parameters whose grad is
// undefined are skipped; f32, bf16 or f16 gradients, halves read as f32), accumulated in a fixed
// order: in double on the CPU; on CUDA in f32 per 8192-element chunk and in double across chunks,
// one multi-tensor pass and one host read (see ops::sum_of_squares). When
// max_norm / (norm + 1e-6) < 1 every gradient is multiplied by that factor; PyTorch multiplies by
// the factor clamped to 1, which is the same thing without the no-op pass. A NaN or inf norm
// propagates into the gradients as in PyTorch; check the returned norm. Returns the norm BEFORE
// clipping. Throws tg::Error when max_norm is negative or NaN.
float clip_grad_norm(const std::vector<Tensor>& params, float max_norm);

}  // namespace tg
