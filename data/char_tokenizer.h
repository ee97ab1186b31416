// Character-level tokenizer: one id per distinct character of the corpus, ids in code point
// order (the vocabulary nanoGPT's shakespeare_char uses).
//
// Characters are UTF-8 code points. A byte that is not part of valid UTF-8 becomes a symbol of
// its own (stored as kInvalidByteBase + byte), so any file round-trips exactly; train() reports
// where the first such byte is, so the program can warn that the byte-level BPE suits binary data.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/tokenizer.h"

namespace tg {

class CharTokenizer : public Tokenizer {
 public:
  static constexpr uint32_t kInvalidByteBase = 0x110000;  // just past the last code point

  // The vocabulary of `text`: its distinct characters.
  static CharTokenizer train(const std::string& text);
  static CharTokenizer from_json(const std::string& json_text, const std::string& source);
  explicit CharTokenizer(std::vector<uint32_t> symbols);

  std::string type() const override { return "char"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(symbols_.size()); }
  std::vector<int32_t> encode(const std::string& bytes) const override;
  std::string token_bytes(int32_t id) const override;
  std::string to_json() const override;

  const std::vector<uint32_t>& symbols() const { return symbols_; }

 private:
  std::vector<uint32_t> symbols_;  // id -> code point (or kInvalidByteBase + byte), ascending
  std::unordered_map<uint32_t, int32_t> ids_;
};

}  // namespace tg
