#include "programs/lib/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/engine.h"

namespace tg {

int32_t sample_token(const float* logits, int64_t vocab_size, const SamplingOptions& options, Generator& gen) {
  std::vector<int32_t> order(static_cast<size_t>(vocab_size));
  std::iota(order.begin(), order.end(), 0);
  // Ties break toward the lower id so that a seed gives the same text on every machine.
  auto higher = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (options.temperature <= 0.0) return *std::min_element(order.begin(), order.end(), higher);
  int64_t keep = options.top_k > 0 ? std::min(options.top_k, vocab_size) : vocab_size;
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), higher);
  order.resize(static_cast<size_t>(keep));

  // Softmax over the kept logits in double, shifted by the largest for stability.
  std::vector<double> weights(order.size());
  double top = logits[order[0]] / options.temperature, total = 0;
  for (size_t i = 0; i < order.size(); i++) total += weights[i] = std::exp(logits[order[i]] / options.temperature - top);
  double target = static_cast<double>(gen.uniform()) * total;
  for (size_t i = 0; i < order.size(); i++) {
    target -= weights[i];
    if (target < 0) return order[i];
  }
  return order.back();  // rounding left a sliver past the last weight
}

void generate(LanguageModel& model, std::vector<int32_t>& ids, const SamplingOptions& options, Generator& gen,
              const std::function<void(int32_t)>& on_token) {
  TG_CHECK(!ids.empty(), "generate: needs at least one token of context");
  bool was_training = model.is_training();
  model.eval();
  NoGrad no_grad;
  const int64_t vocab = model.vocab_size();
  std::unique_ptr<Decoder> decoder = model.decoder();
  Tensor logits = decoder->feed(ids);
  for (int64_t n = 0; n < options.tokens; n++) {
    std::vector<float> next = logits.contiguous().to_vector();
    int32_t id = sample_token(next.data(), vocab, options, gen);
    ids.push_back(id);
    on_token(id);
    if (n + 1 < options.tokens) logits = decoder->feed({id});
  }
  model.train(was_training);
}

}  // namespace tg
