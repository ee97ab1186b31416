// Causal multi-head self-attention, flash-style: the T x T score matrix is never stored, only
// one score tile at a time, with an online softmax in forward and a recompute in backward.
//
// Layout (GPT-2's c_attn output): qkv (B, T, 3C), the first C columns of each row are q, the next
// C are k, the last C are v, and head h owns columns [h*HS, (h+1)*HS) of each third (HS = C / NH).
// The kernels read q, k and v in place with strides; out uses the same head interleaving.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// qkv (B,T,3C) -> out (B,T,C); lse (B,NH,T) = per-row log-sum-exp of the scaled, masked scores
void attention_forward(float* out, float* lse, const float* qkv, int64_t B, int64_t T, int64_t C, int64_t NH);

// dout (B,T,C), qkv (B,T,3C), out (B,T,C), lse (B,NH,T) -> dqkv (B,T,3C) += gradient
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out, const float* lse,
                        int64_t B, int64_t T, int64_t C, int64_t NH);

TG_CPU_ISA_END
}  // namespace tg::cpu
