// One pre-LayerNorm transformer block (GPT-2):  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x)),
// with the feed-forward part chosen by name (nn/feedforward.h: "gelu" is GPT-2's MLP).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "autograd/functions/elementwise.h"
#include "nn/attention.h"
#include "nn/layernorm.h"
#include "nn/feedforward.h"
#include "nn/module.h"

namespace tg {

class TransformerBlock : public Module {
 public:
  TransformerBlock(int64_t n_embd, int64_t n_head, float dropout_p = 0.0f, bool bias = true, Generator* gen = nullptr,
                   const std::string& mlp_name = "gelu") {
    ln_1 = register_module("ln_1", std::make_shared<LayerNorm>(n_embd, 1e-5f, bias));
    attn = register_module("attn", std::make_shared<CausalSelfAttention>(n_embd, n_head, dropout_p, bias, gen));
    ln_2 = register_module("ln_2", std::make_shared<LayerNorm>(n_embd, 1e-5f, bias));
    mlp = register_module("mlp", make_mlp(mlp_name, n_embd, dropout_p, bias, gen));
  }

  // x (B, T, C) -> (B, T, C)
  Tensor forward(const Tensor& x) const {
    // The residual adds sit in the epilogues of attn's and mlp's c_proj GEMMs, and ln_2 reads the
    // sum. add_layernorm (the add and ln_2 as one op of two outputs) measured slower on the CPU:
    // it makes c_proj write its projection and reads it back with x (5 passes over the (B,T,C)
    // stream instead of 4), with dropout as without (README, "Performance").
    Tensor h = attn->forward_residual(ln_1->forward(x), x);
    return mlp->forward_residual(ln_2->forward(h), h);
  }

  std::shared_ptr<LayerNorm> ln_1;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<LayerNorm> ln_2;
  std::shared_ptr<FeedForward> mlp;
};

}  // namespace tg
