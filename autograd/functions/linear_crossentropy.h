// The output layer and its loss in one differentiable function, chunk by chunk over the rows, so
// that the whole (N, V) logits never exist: for a large vocabulary they and their gradient are
// the largest tensors of a language model's step (N = B*T tokens, V ids).
//
//   x (N, C) or (B, T, C), weight (V, C), bias (V) or none, targets (N) or (B, T) i32 -> loss ()
//   == cross_entropy(linear(x, weight, bias), targets, ignore_index, label_smoothing)
//
// For each chunk of `chunk_rows` rows, in the forward:
//   logits_c (m, V) = x_c weight^T + bias                     ops::linear
//   loss_c, then d(logits_c) over the same buffer            ops::crossentropy_forward / _backward_inplace
//   dx_c (m, C) = d(logits_c) weight                          ops::matmul
//   dweight (V, C) += d(logits_c)^T x_c, dbias += col sums   ops::matmul (beta 1), column_sums_accumulate
// as fused linear-cross-entropy kernels do: the gradients are formed while the chunk's logits are
// at hand, and the backward only scales them by the loss's upstream gradient. Under NoGrad (or
// when nothing needs a gradient) only the loss is computed, still chunk by chunk.
//
// The loss is PyTorch's mean over the targets that are not ignore_index: each chunk's mean is
// weighted by its share of those targets, and each chunk's gradient by 1/(all of them), so the
// result is the unfused one up to the order of the sums (a chunk of only ignored targets weighs
// 0; every target ignored gives 0 with zero gradients, as cross_entropy does).
//
// Memory: one chunk's logits (m, V) at a time, plus the saved gradients dx (N, C) and dweight
// (V, C) (and dbias), which the unfused path would allocate in its backward anyway. With bf16 or
// f16 operands dweight accumulates across chunks in that dtype (one rounding per chunk), where
// the unfused GEMM sums all N rows in f32 before rounding once.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg {

// chunk_rows >= 1; a chunk larger than N is one chunk. Every call goes through the ops fronts, so
// it runs on each device they serve. Throws tg::Error naming "linear_cross_entropy" and the
// argument for mismatched shapes or dtypes.
Tensor linear_cross_entropy(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& targets,
                            int64_t chunk_rows, int32_t ignore_index = -1, float label_smoothing = 0.0f);

}  // namespace tg
