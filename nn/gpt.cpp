#include "nn/gpt.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "autograd/functions/crossentropy.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/linear_crossentropy.h"
#include "autograd/functions/matmul.h"
#include "nn/init.h"

namespace tg {

void GPTConfig::validate() const {
  auto positive = [](const char* field, int64_t value) {
    TG_CHECK(value > 0, std::string("GPTConfig: ") + field + " must be positive, found " + std::to_string(value));
  };
  positive("vocab_size", vocab_size);
  positive("block_size", block_size);
  positive("n_layer", n_layer);
  positive("n_head", n_head);
  positive("n_embd", n_embd);
  TG_CHECK(n_embd % n_head == 0, "GPTConfig: n_embd (" + std::to_string(n_embd) + ") must be divisible by n_head (" +
                                     std::to_string(n_head) + ")");
  TG_CHECK(vocab_size <= INT32_MAX, "GPTConfig: vocab_size " + std::to_string(vocab_size) +
                                        " does not fit the i32 token ids");
  const std::vector<std::string>& mlps = mlp_names();
  if (std::find(mlps.begin(), mlps.end(), mlp) == mlps.end()) {
    std::string list;
    for (const std::string& name : mlps) list += (list.empty() ? "" : "|") + name;
    throw Error("GPTConfig: mlp must be one of " + list + ", found '" + mlp + "'");
  }
  TG_CHECK(dropout >= 0.0f && dropout < 1.0f, "GPTConfig: dropout must be in [0, 1), found " + std::to_string(dropout));
}

static bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

GPT::GPT(const GPTConfig& config, uint64_t seed) : config_(config) {
  config_.validate();
  const GPTConfig& c = config_;
  // The layers' own default inits draw from a scratch generator and are overwritten below; the
  // seeded generator is used only for the documented GPT-2 init, so it alone fixes the weights.
  Generator scratch(seed);
  wte = register_module("wte", std::make_shared<Embedding>(c.vocab_size, c.n_embd, &scratch));
  wpe = register_module("wpe", std::make_shared<Embedding>(c.block_size, c.n_embd, &scratch));
  drop = register_module("drop", std::make_shared<Dropout>(c.dropout));
  h = register_module("h", std::make_shared<ModuleList<TransformerBlock>>());
  for (int64_t l = 0; l < c.n_layer; l++)
    h->push_back(std::make_shared<TransformerBlock>(c.n_embd, c.n_head, c.dropout, c.bias, &scratch, c.mlp));
  ln_f = register_module("ln_f", std::make_shared<LayerNorm>(c.n_embd, 1e-5f, c.bias));

  Generator gen(seed);
  const float std_weight = 0.02f;
  const float std_residual = 0.02f / std::sqrt(2.0f * static_cast<float>(c.n_layer));
  for (auto& [name, p] : named_parameters()) {
    if (p.dim() == 1) {  // biases zero; LayerNorm weights keep their ones
      if (ends_with(name, ".bias")) p.zero_();
      continue;
    }
    if (ends_with(name, "c_proj.weight")) init::normal_(p, 0.0f, std_residual, gen);
    else init::normal_(p, 0.0f, std_weight, gen);
  }
}

Tensor GPT::hidden(const Tensor& idx) const {
  TG_CHECK(idx.defined() && idx.dim() == 2, "GPT::forward: idx must have shape (B, T), found " +
                                                (idx.defined() ? shape_str(idx.shape()) : std::string("undefined")));
  TG_CHECK(idx.dtype() == DType::I32, std::string("GPT::forward: idx must have dtype i32, found ") +
                                          dtype_name(idx.dtype()));
  const int64_t T = idx.size(1);
  TG_CHECK(T >= 1 && T <= config_.block_size, "GPT::forward: sequence length T = " + std::to_string(T) +
                                                  " must be in [1, block_size = " +
                                                  std::to_string(config_.block_size) + "]");
  Tensor positions = Tensor::arange(T, DType::I32, idx.device());
  Tensor x = add(wte->forward(idx), wpe->forward(positions));  // (B, T, C) + (T, C)
  x = drop->forward(x);
  for (const auto& block : *h) x = block->forward(x);
  return ln_f->forward(x);
}

Tensor GPT::forward(const Tensor& idx) const {
  return linear(hidden(idx), wte->weight, Tensor());  // tied lm_head: x @ wte.weight^T
}

Tensor GPT::loss(const Tensor& logits, const Tensor& targets) const {
  return cross_entropy(logits, targets, -1);
}

Tensor GPT::forward_loss(const Tensor& idx, const Tensor& targets) const {
  if (loss_chunk_ == 0) return loss(forward(idx), targets);
  return linear_cross_entropy(hidden(idx), wte->weight, Tensor(), targets, loss_chunk_, -1);
}

void GPT::set_loss_chunk(int64_t tokens) {
  TG_CHECK(tokens >= 0, "GPT::set_loss_chunk: tokens per chunk must be >= 0 (0: unchunked), found " +
                            std::to_string(tokens));
  loss_chunk_ = tokens;
}

double GPT::flops_per_token() const {
  const GPTConfig& c = config_;
  double N = static_cast<double>(num_parameters() - wpe->weight.numel());
  return 6.0 * N + 12.0 * c.n_layer * c.n_embd * c.block_size;
}

}  // namespace tg

namespace tg {

namespace {

// Keeps the last block_size ids and runs the whole window for every token, as nanoGPT samples.
class GPTDecoder : public Decoder {
 public:
  explicit GPTDecoder(const GPT& model) : model_(model) {}

  Tensor feed(const std::vector<int32_t>& ids) override {
    TG_CHECK(!ids.empty(), "GPT decoder: feed needs at least one id");
    context_.insert(context_.end(), ids.begin(), ids.end());
    const size_t block = static_cast<size_t>(model_.config().block_size);
    if (context_.size() > block) context_.erase(context_.begin(), context_.end() - static_cast<std::ptrdiff_t>(block));
    const int64_t T = static_cast<int64_t>(context_.size());
    // Only the last position's logits are needed: the lm_head runs on its hidden state alone.
    Tensor h = model_.hidden(Tensor::from_ints(context_, {1, T}).to(model_.wte->weight.device()));
    Tensor last = h.select(0, 0).narrow(0, T - 1, 1);  // (1, T, C) -> (1, C)
    return linear(last, model_.wte->weight, Tensor()).select(0, 0);  // (1, V) -> (V)
  }

 private:
  const GPT& model_;
  std::vector<int32_t> context_;
};

}  // namespace

std::unique_ptr<Decoder> GPT::decoder() const { return std::make_unique<GPTDecoder>(*this); }

}  // namespace tg
