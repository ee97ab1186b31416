// Cross-entropy fronts: check the tensors (including every target), then run the kernel for their
// device.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg::ops {

// logits (N, V) or (B, T, V) f32, targets (N) or (B, T) i32 -> loss () = mean over the targets that
// are not ignore_index of -log softmax(logits)[target] (0 when all are ignored); lse (targets'
// shape) = the log-sum-exp of each row, saved for the backward. Throws naming the first target
// outside [0, V) that is not ignore_index.
void crossentropy_forward(Tensor& loss, Tensor& lse, const Tensor& logits, const Tensor& targets, int32_t ignore_index);

// dlogits (logits' shape) += (softmax(logits) - onehot(targets)) * dloss / count, dloss of shape ().
void crossentropy_backward(Tensor& dlogits, const Tensor& dloss, const Tensor& logits, const Tensor& targets,
                           const Tensor& lse, int32_t ignore_index);

}  // namespace tg::ops
