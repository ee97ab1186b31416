// LSTMLanguageModel: a character-level (or any-token) LSTM language model.
//
//   idx (B, T) -> wte (B, T, H) -> rnn: num_layers x LSTM(H -> H), dropout between layers
//              -> dropout -> lm_head -> logits (B, T, V)
//
// The parameter names are those of the same model in PyTorch, so that a PyTorch script loads its
// checkpoint with load_state_dict:
//
//   class LSTMLanguageModel(nn.Module):
//       def __init__(self, V, H, L, dropout):
//           super().__init__()
//           self.wte = nn.Embedding(V, H)                  # wte.weight (V, H)
//           self.rnn = nn.LSTM(H, H, L, batch_first=True, dropout=dropout)  # rnn.weight_ih_l0, ...
//           self.drop = nn.Dropout(dropout)
//           self.lm_head = nn.Linear(H, V)                 # lm_head.weight (V, H), lm_head.bias (V)
//
// Unlike the GPT there is no learned position table and so no longest sequence: training windows
// have --block tokens, and sampling carries (h, c) from token to token for as long as it runs.
#pragma once
#include <cstdint>
#include <memory>

#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/language_model.h"
#include "nn/linear.h"
#include "nn/rnn.h"

namespace tg {

struct LSTMLanguageModelConfig {
  int64_t vocab_size = 0;
  int64_t n_layer = 0;
  int64_t n_embd = 0;    // the embedding width and every layer's hidden size H
  float dropout = 0.0f;  // between LSTM layers and before lm_head, in training

  // Throws tg::Error naming the offending field and its value.
  void validate() const;
};

// The recurrent state between calls: each layer's h and c, (n_layer, B, H). Undefined means zeros.
struct LSTMState {
  Tensor h, c;
};

class LSTMLanguageModel : public LanguageModel {
 public:
  // PyTorch's default initialisation of each layer, drawn from Generator(seed) in parameter order:
  // wte.weight N(0, 1); the LSTM's weights and biases uniform in +-1/sqrt(H); lm_head's weight and
  // bias uniform in +-1/sqrt(H). So a seed fixes the weights on every machine and device.
  LSTMLanguageModel(const LSTMLanguageModelConfig& config, uint64_t seed);

  // idx i32 (B, T) -> logits (B, T, vocab_size), from zero states.
  Tensor forward(const Tensor& idx) const override;
  // The same, continuing from `state` (n_layer, B, H each, or undefined for zeros), which is
  // replaced by the state after the last token: a long sequence fed in pieces gives the logits
  // of feeding it whole.
  Tensor forward(const Tensor& idx, LSTMState& state) const;

  int64_t vocab_size() const override { return config_.vocab_size; }
  const LSTMLanguageModelConfig& config() const { return config_; }

  // 6 FLOPs per weight per token (2 forward, 4 backward) through every matrix that multiplies:
  // the LSTM's weight_ih and weight_hh and lm_head.weight; wte is a lookup, and the biases and the
  // cell's pointwise work are a vanishing share.
  double flops_per_token() const override;

  // Feeds the prompt in one pass, then one step per token, carrying (h, c).
  std::unique_ptr<Decoder> decoder() const override;

  std::shared_ptr<Embedding> wte;
  std::shared_ptr<LSTM> rnn;
  std::shared_ptr<Dropout> drop;
  std::shared_ptr<Linear> lm_head;

 private:
  LSTMLanguageModelConfig config_;
};

}  // namespace tg
