// Differentiable causal multi-head self-attention on GPT-2's fused q|k|v projection.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg {

// qkv (B, T, 3C) -> (B, T, C). Along the last dimension of qkv the first C columns are q, the next
// C are k, the last C are v; head h uses columns [h*HS, (h+1)*HS) of each third (HS = C / n_head)
// and writes the same columns of the output. Position t attends to positions <= t, scale
// 1/sqrt(HS). Equal to PyTorch's split / view / transpose, scaled_dot_product_attention(...,
// is_causal=True), transpose back. Throws naming the shapes when C is not divisible by n_head.
Tensor causal_self_attention(const Tensor& qkv, int64_t n_head);

}  // namespace tg
