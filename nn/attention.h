// Causal multi-head self-attention, GPT-2 layout: c_attn (C -> 3C) makes q|k|v, a fused causal
// attention kernel mixes the positions, c_proj (C -> C) projects back, then residual dropout.
//
// Attention-probability dropout (nanoGPT's attn_dropout) is not applied: the fused kernel never
// holds the (T, T) probabilities in memory, so there is nothing to mask. The residual dropout is
// applied as usual. With dropout = 0 (the usual setting for fine-tuning and small models) the two
// agree exactly.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "autograd/functions/attention.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/matmul.h"
#include "nn/dropout.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace tg {

class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(int64_t n_embd, int64_t n_head, float dropout_p = 0.0f, bool bias = true,
                      Generator* gen = nullptr)
      : n_head(n_head) {
    TG_CHECK(n_head > 0 && n_embd > 0 && n_embd % n_head == 0,
             "CausalSelfAttention: n_embd (" + std::to_string(n_embd) + ") must be a positive multiple of n_head (" +
                 std::to_string(n_head) + ")");
    c_attn = register_module("c_attn", std::make_shared<Linear>(n_embd, 3 * n_embd, bias, gen));
    c_proj = register_module("c_proj", std::make_shared<Linear>(n_embd, n_embd, bias, gen));
    resid_dropout = register_module("resid_dropout", std::make_shared<Dropout>(dropout_p));
  }

  // x (B, T, C) -> (B, T, C); position t attends to positions <= t.
  Tensor forward(const Tensor& x) const {
    Tensor qkv = c_attn->forward(x);  // (B, T, 3C)
    return resid_dropout->forward(c_proj->forward(causal_self_attention(qkv, n_head)));
  }
  // residual + forward(x), with the add fused into c_proj when dropout is inactive (as MLP's).
  Tensor forward_residual(const Tensor& x, const Tensor& residual) const {
    if (!resid_dropout->is_identity()) return add(residual, forward(x));
    Tensor y = causal_self_attention(c_attn->forward(x), n_head);
    return linear_residual(y, c_proj->weight, c_proj->bias, residual);
  }

  int64_t n_head;
  std::shared_ptr<Linear> c_attn;
  std::shared_ptr<Linear> c_proj;
  std::shared_ptr<Dropout> resid_dropout;
};

}  // namespace tg
