#include "data/text_dataset.h"

#include <cmath>

#include "tensor/error.h"

namespace tg {

TextDataset split_tokens(std::vector<int32_t> tokens, double val_fraction, int64_t block, const std::string& source) {
  TG_CHECK(val_fraction > 0.0 && val_fraction < 1.0,
           "split_tokens: val_fraction must be in (0, 1), got " + std::to_string(val_fraction));
  int64_t total = static_cast<int64_t>(tokens.size());
  int64_t val_count = static_cast<int64_t>(std::llround(static_cast<double>(total) * val_fraction));
  int64_t train_count = total - val_count;
  if (train_count < block + 1 || val_count < block + 1)
    throw Error("corpus '" + source + "' is too short: its " + std::to_string(total) + " tokens split into " +
                std::to_string(train_count) + " for training and " + std::to_string(val_count) +
                " for validation, and --block " + std::to_string(block) + " needs at least " +
                std::to_string(block + 1) + " in each (use a longer file or a smaller --block)");
  TextDataset data;
  data.val = std::make_shared<const std::vector<int32_t>>(tokens.begin() + train_count, tokens.end());
  tokens.resize(static_cast<size_t>(train_count));
  tokens.shrink_to_fit();
  data.train = std::make_shared<const std::vector<int32_t>>(std::move(tokens));
  return data;
}

}  // namespace tg
