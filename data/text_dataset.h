// A tokenized corpus split into training and validation tokens (the first part trains, the
// tail validates, as nanoGPT does, so validation text is never seen in training windows).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tg {

struct TextDataset {
  std::shared_ptr<const std::vector<int32_t>> train;
  std::shared_ptr<const std::vector<int32_t>> val;
};

// Splits `tokens` with the last `val_fraction` of them for validation. Each split must hold at
// least one window of block + 1 tokens (inputs and their shifted targets); otherwise throws
// tg::Error naming `source`, the counts and what would fix it.
TextDataset split_tokens(std::vector<int32_t> tokens, double val_fraction, int64_t block, const std::string& source);

}  // namespace tg
