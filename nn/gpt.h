// GPT: a GPT-2 style decoder-only transformer.
//
//   idx (B, T) -> wte(idx) + wpe(0..T-1) -> dropout -> n_layer x TransformerBlock -> ln_f
//              -> logits (B, T, V) = x @ wte.weight^T   (the lm_head is tied to the token embedding)
//
// forward_loss can run the lm_head and the loss chunk by chunk instead (set_loss_chunk).
// Parameter names are GPT-2's without the "transformer." prefix ("wte.weight", "h.0.ln_1.weight",
// "h.0.attn.c_attn.weight", ..., "ln_f.bias"); the tied lm_head is not a separate parameter.
// Weights are (out, in) as in PyTorch's nn.Linear (GPT-2's original Conv1D stores them transposed).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/block.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/language_model.h"
#include "nn/layernorm.h"
#include "nn/module.h"

namespace tg {

struct GPTConfig {
  int64_t vocab_size = 0;
  int64_t block_size = 0;  // the longest sequence (number of learned positions)
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_embd = 0;
  float dropout = 0.0f;  // embedding, residual and MLP dropout (not attention probabilities: nn/attention.h)
  bool bias = true;      // biases in Linear and LayerNorm layers
  std::string mlp = "gelu";  // the blocks' feed-forward part, one of mlp_names() (nn/feedforward.h)

  // Throws tg::Error naming the offending field and its value.
  void validate() const;
};

class GPT : public LanguageModel {
 public:
  // GPT-2 initialisation from Generator(seed), tensor by tensor in named_parameters() order (each
  // takes one draw as the key of its values, see nn/init.h): Linear and Embedding weights
  // N(0, 0.02), except the residual projections
  // (attn.c_proj.weight, mlp.c_proj.weight) N(0, 0.02 / sqrt(2 * n_layer)) so that the residual
  // stream's variance does not grow with depth; biases zeros; LayerNorm weights ones, biases zeros
  // (these draw nothing).
  GPT(const GPTConfig& config, uint64_t seed);

  // idx i32 (B, T) with T <= block_size and ids in [0, vocab_size) -> logits (B, T, vocab_size)
  Tensor forward(const Tensor& idx) const override;
  // Mean cross entropy of logits (B, T, V) against targets i32 (B, T); targets of -1 are ignored.
  Tensor loss(const Tensor& logits, const Tensor& targets) const override;
  // The final hidden states, before the lm_head: idx (B, T) -> ln_f's output (B, T, n_embd).
  Tensor hidden(const Tensor& idx) const;
  // loss(forward(idx), targets); with a loss chunk set, the lm_head and the loss run chunk by
  // chunk over the B*T tokens (autograd/functions/linear_crossentropy.h) and the (B*T, V) logits
  // are never held. The tied weight's gradient lands in wte.weight either way.
  Tensor forward_loss(const Tensor& idx, const Tensor& targets) const override;
  // Tokens per chunk of the output layer and loss in forward_loss; 0 (the default): unchunked.
  // How many is the planner's decision (nn/planner.h: plan_output_layer). Throws for a negative.
  void set_loss_chunk(int64_t tokens);
  int64_t loss_chunk() const { return loss_chunk_; }

  const GPTConfig& config() const { return config_; }

  // Every block's MLP blockwise, chunk_rows tokens of the batch at a time, or unfused with 0
  // (TransformerBlock::set_mlp_chunk_rows: an execution choice, the parameters are the same).
  void set_mlp_chunk_rows(int64_t chunk_rows) {
    for (const auto& block : *h) block->set_mlp_chunk_rows(chunk_rows);
  }

  // Training FLOPs per token at sequence length block_size, as nanoGPT's estimate_mfu (PaLM,
  // appendix B): 6N for the matmuls through every weight (2 forward + 4 backward per weight per
  // token), where N excludes wpe (a lookup, no multiply) but includes wte (it is the lm_head),
  // plus 12 * n_layer * n_embd * T for attention's QK^T and AV (each 2 * T * C forward per token,
  // times 3 for forward + backward). Counts the full T x T score matrix, as PaLM does.
  double flops_per_token() const override;

  int64_t vocab_size() const override { return config_.vocab_size; }
  // Sampling recomputes the last block_size ids at every token (there is no KV cache).
  std::unique_ptr<Decoder> decoder() const override;

  std::shared_ptr<Embedding> wte;
  std::shared_ptr<Embedding> wpe;
  std::shared_ptr<Dropout> drop;
  std::shared_ptr<ModuleList<TransformerBlock>> h;
  std::shared_ptr<LayerNorm> ln_f;

 private:
  GPTConfig config_;
  int64_t loss_chunk_ = 0;
};

}  // namespace tg
