// Cross-entropy fronts: check the tensors (including every target), then run the kernel for their
// device.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg::ops {

// logits (N, V) or (B, T, V) of a float dtype (f32 on the CPU; f32, bf16 or f16 on CUDA), targets (N)
// or (B, T) i32 -> loss () f32 = mean over the targets that are not ignore_index of
// -log softmax(logits)[target] (0 when all are ignored); lse (targets' shape) f32 = the log-sum-exp of
// each row, saved for the backward. Throws naming the first target outside [0, V) that is not
// ignore_index (checked on the host for both devices: for CUDA targets, one copy of N ints that
// waits for the work queued before it).
// label_smoothing e in [0, 1], PyTorch's definition: each row's loss becomes
// (1 - e) * (-log p[target]) + e * mean over the V classes of (-log p), on either device.
void crossentropy_forward(Tensor& loss, Tensor& lse, const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                          float label_smoothing = 0.0f);

// dlogits (logits' shape and dtype) += (softmax(logits) - (1 - e) onehot(targets) - e / V) * dloss /
// count, dloss an f32 scalar (shape ()), e = label_smoothing.
void crossentropy_backward(Tensor& dlogits, const Tensor& dloss, const Tensor& logits, const Tensor& targets,
                           const Tensor& lse, int32_t ignore_index, float label_smoothing = 0.0f);

// The same gradient written over the logits themselves: logits = (softmax(logits) - onehot) * dloss /
// count, ignored rows 0. Saves the N x V gradient buffer when nothing else needs the logits
// afterwards (on CUDA one pass in place; on the CPU through a temporary).
void crossentropy_backward_inplace(Tensor& logits, const Tensor& dloss, const Tensor& targets, const Tensor& lse,
                                   int32_t ignore_index, float label_smoothing = 0.0f);

}  // namespace tg::ops
