// Causal self-attention fronts: check the tensors, then run the kernel for their device.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg::ops {

// Throws unless qkv is a (B, T, 3C) tensor of f32, bf16 or f16 (halves: scores, softmax and
// products in f32, outputs rounded once; on the CPU through the f32 kernel on widened copies) and
// n_head > 0 divides C. Errors name causal_self_attention,
// the argument and the shape found.
void check_attention_qkv(const Tensor& qkv, int64_t n_head);

// qkv (B,T,3C) -> out (B,T,C) in qkv's dtype; lse (B,NH,T) f32, the per-row log-sum-exp the
// backward needs. q, k, v are the three C-column thirds of qkv, head h owning columns
// [h*HS, (h+1)*HS) of each.
void attention_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int64_t n_head);

// dqkv (B,T,3C) += gradient, from dout (B,T,C) and the forward's qkv, out and lse (dqkv, dout,
// out in qkv's dtype; lse f32). On CUDA: deterministic (no atomics).
void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                        int64_t n_head);

}  // namespace tg::ops
