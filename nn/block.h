// One pre-LayerNorm transformer block (GPT-2):  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x)),
// with the feed-forward part chosen by name (nn/feedforward.h: "gelu" is GPT-2's MLP).
// The second half can run blockwise (set_mlp_chunk_rows): ln_2 and the GELU MLP chunk by chunk over
// the rows, the hidden recomputed in the backward instead of kept (autograd/functions/blockwise_mlp.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "autograd/functions/blockwise_mlp.h"
#include "autograd/functions/elementwise.h"
#include "nn/attention.h"
#include "nn/layernorm.h"
#include "nn/feedforward.h"
#include "nn/mlp.h"
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
    if (mlp_chunk_rows_ > 0) return blockwise_mlp(h, blockwise_weights(), mlp_chunk_rows_);
    return mlp->forward_residual(ln_2->forward(h), h);
  }

  // Runs the second half blockwise, chunk_rows rows (tokens of the whole batch) at a time; 0 goes
  // back to the unfused path. The result differs from the unfused one only in the order of the
  // weight-gradient sums. Throws tg::Error for a chunk below 0, and for a block whose feed-forward
  // part is not GPT-2's GELU MLP or has dropout (the blockwise function has neither a gate nor a
  // dropout mask).
  void set_mlp_chunk_rows(int64_t chunk_rows) {
    TG_CHECK(chunk_rows >= 0, "TransformerBlock: the MLP chunk must be 0 (unfused) or positive, found " +
                                  std::to_string(chunk_rows));
    if (chunk_rows > 0) {
      auto gelu_mlp = std::dynamic_pointer_cast<MLP>(mlp);
      TG_CHECK(gelu_mlp != nullptr, "TransformerBlock: the blockwise MLP runs GPT-2's gelu MLP only, and this "
                                    "block's feed-forward part is another");
      TG_CHECK(gelu_mlp->dropout->p == 0.0f, "TransformerBlock: the blockwise MLP has no dropout, and this block's "
                                             "MLP has p = " + std::to_string(gelu_mlp->dropout->p));
    }
    mlp_chunk_rows_ = chunk_rows;
  }
  int64_t mlp_chunk_rows() const { return mlp_chunk_rows_; }

  std::shared_ptr<LayerNorm> ln_1;
  std::shared_ptr<CausalSelfAttention> attn;
  std::shared_ptr<LayerNorm> ln_2;
  std::shared_ptr<FeedForward> mlp;

 private:
  MlpWeights blockwise_weights() const {
    const MLP& gelu_mlp = static_cast<const MLP&>(*mlp);  // set_mlp_chunk_rows checked it
    MlpWeights w;
    w.ln_weight = ln_2->weight;
    w.ln_bias = ln_2->bias;
    w.ln_eps = ln_2->eps;
    w.fc_weight = gelu_mlp.c_fc->weight;
    w.fc_bias = gelu_mlp.c_fc->bias;
    w.proj_weight = gelu_mlp.c_proj->weight;
    w.proj_bias = gelu_mlp.c_proj->bias;
    return w;
  }

  int64_t mlp_chunk_rows_ = 0;
};

}  // namespace tg
