// Differentiable fused softmax + cross-entropy loss.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg {

// logits (N, V) or (B, T, V) of a float dtype (f32 on the CPU; f32, bf16 or f16 on CUDA), targets (N)
// or (B, T) i32 -> an f32 scalar (shape ()): the mean over the targets that are not ignore_index of
// -log softmax(logits)[target]; the logits' gradient has their dtype. When every target is ignored
// the loss is 0 with a zero gradient (PyTorch gives nan; a batch of pure padding should not stop
// training). A target outside [0, V) that is not ignore_index throws, naming it.
// The probabilities are never stored: the backward recomputes them from the logits and one saved
// log-sum-exp per row.
// label_smoothing e in [0, 1], PyTorch's definition: loss = (1 - e) * NLL + e * the mean over
// classes of -log p, both averaged over the rows not ignored. e > 0 runs on the CPU only so far.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index = -1,
                     float label_smoothing = 0.0f);

}  // namespace tg
