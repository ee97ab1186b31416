#include "nn/lstm_lm.h"

#include <string>

namespace tg {

void LSTMLanguageModelConfig::validate() const {
  auto positive = [](const char* field, int64_t value) {
    TG_CHECK(value > 0, std::string("LSTMLanguageModelConfig: ") + field + " must be positive, found " +
                            std::to_string(value));
  };
  positive("vocab_size", vocab_size);
  positive("n_layer", n_layer);
  positive("n_embd", n_embd);
  TG_CHECK(vocab_size <= INT32_MAX, "LSTMLanguageModelConfig: vocab_size " + std::to_string(vocab_size) +
                                        " does not fit the i32 token ids");
  TG_CHECK(dropout >= 0.0f && dropout < 1.0f,
           "LSTMLanguageModelConfig: dropout must be in [0, 1), found " + std::to_string(dropout));
}

LSTMLanguageModel::LSTMLanguageModel(const LSTMLanguageModelConfig& config, uint64_t seed) : config_(config) {
  config_.validate();
  const LSTMLanguageModelConfig& c = config_;
  Generator gen(seed);
  wte = register_module("wte", std::make_shared<Embedding>(c.vocab_size, c.n_embd, &gen));
  rnn = register_module("rnn", std::make_shared<LSTM>(c.n_embd, c.n_embd, c.n_layer, /*batch_first=*/true, c.dropout,
                                                      /*bias=*/true, &gen));
  drop = register_module("drop", std::make_shared<Dropout>(c.dropout));
  lm_head = register_module("lm_head", std::make_shared<Linear>(c.n_embd, c.vocab_size, /*bias=*/true, &gen));
}

Tensor LSTMLanguageModel::forward(const Tensor& idx) const {
  LSTMState zeros;
  return forward(idx, zeros);
}

Tensor LSTMLanguageModel::forward(const Tensor& idx, LSTMState& state) const {
  TG_CHECK(idx.defined() && idx.dim() == 2, "LSTMLanguageModel::forward: idx must have shape (B, T), found " +
                                                (idx.defined() ? shape_str(idx.shape()) : std::string("undefined")));
  TG_CHECK(idx.dtype() == DType::I32, std::string("LSTMLanguageModel::forward: idx must have dtype i32, found ") +
                                          dtype_name(idx.dtype()));
  TG_CHECK(idx.size(1) >= 1, "LSTMLanguageModel::forward: idx must hold at least one step, found T = 0");
  RNNOutput out = rnn->forward(wte->forward(idx), state.h, state.c);  // (B, T, H)
  state = {out.h_n, out.c_n};
  return lm_head->forward(drop->forward(out.output));
}

double LSTMLanguageModel::flops_per_token() const {
  double multiplied = 0;
  for (int64_t k = 0; k < config_.n_layer; k++)
    multiplied += static_cast<double>(rnn->layer(k).weight_ih.numel() + rnn->layer(k).weight_hh.numel());
  multiplied += static_cast<double>(lm_head->weight.numel());
  return 6.0 * multiplied;
}

namespace {

class LSTMDecoder : public Decoder {
 public:
  explicit LSTMDecoder(const LSTMLanguageModel& model) : model_(model) {}

  Tensor feed(const std::vector<int32_t>& ids) override {
    TG_CHECK(!ids.empty(), "LSTM decoder: feed needs at least one id");
    const int64_t T = static_cast<int64_t>(ids.size());
    Tensor logits = model_.forward(Tensor::from_ints(ids, {1, T}).to(model_.wte->weight.device()), state_);
    return logits.select(0, 0).select(0, T - 1);  // (1, T, V) -> (V)
  }

 private:
  const LSTMLanguageModel& model_;
  LSTMState state_;
};

}  // namespace

std::unique_ptr<Decoder> LSTMLanguageModel::decoder() const { return std::make_unique<LSTMDecoder>(*this); }

}  // namespace tg
