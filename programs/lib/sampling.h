// Drawing text from a language model (nn/language_model.h): one token at a time from the softmax of
// the next token's logits, with temperature and top-k, as nanoGPT's sample.py does.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "nn/language_model.h"
#include "tensor/random.h"

namespace tg {

struct SamplingOptions {
  int64_t tokens = 200;
  double temperature = 0.8;  // 0 picks the most likely token every time
  int64_t top_k = 200;       // 0 keeps the whole vocabulary
};

// Index drawn from softmax(logits / temperature) restricted to the top_k largest logits.
int32_t sample_token(const float* logits, int64_t vocab_size, const SamplingOptions& options, Generator& gen);

// Appends options.tokens tokens to `ids` (which must not be empty), calling on_token(id) as each
// one is drawn so that a caller can print it at once. The model's decoder decides what context it
// keeps (the GPT its last block_size ids, the LSTM its state). Runs under NoGrad in eval mode and
// restores the model's mode afterwards.
void generate(LanguageModel& model, std::vector<int32_t>& ids, const SamplingOptions& options, Generator& gen,
              const std::function<void(int32_t)>& on_token);

}  // namespace tg
