// Byte-level BPE (as in GPT-2): ids 0..255 are the bytes, and each merge learned from the corpus
// adds one id for the concatenation of two existing tokens. Any byte string encodes, binary
// files included, and decoding is exact.
//
// Text is first cut into chunks (a word with its leading space, a run of digits or punctuation,
// a run of whitespace; see pretokenize) and merges never cross a chunk boundary, as in GPT-2:
// tokens stay meaningful, and training counts pairs over distinct chunks instead of the whole
// corpus.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "data/tokenizer.h"

namespace tg {

class BpeTokenizer : public Tokenizer {
 public:
  using Merge = std::pair<int32_t, int32_t>;  // (left, right) -> id 256 + index in merges

  // The most bytes the vocabulary may spell in all (256 MiB). A merge's token is its two parts
  // together, so lengths can double with every merge: [256, 256], [257, 257], ... spells a 2^40-byte
  // token in 40 merges of a few bytes each. The vocabulary is held spelled out, so a merge list
  // beyond this is refused before anything is built; a trained one is far below it (GPT-2's 50,257
  // tokens spell about 330 KB).
  static constexpr uint64_t kMaxVocabBytes = uint64_t(1) << 28;

  // Learns up to vocab_size - 256 merges from `text`, the most frequent pair first (ties go to
  // the smallest (left, right), so training is deterministic). Stops early when no pair occurs
  // twice; vocab_size() then says how many ids there are.
  static BpeTokenizer train(const std::string& text, int64_t vocab_size);
  static BpeTokenizer from_json(const std::string& json_text, const std::string& source);
  // Throws tg::Error when a merge refers to a token not defined before it, or when the tokens
  // would spell more than kMaxVocabBytes.
  explicit BpeTokenizer(std::vector<Merge> merges);

  std::string type() const override { return "bpe"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  std::vector<int32_t> encode(const std::string& bytes) const override;
  std::string token_bytes(int32_t id) const override;
  std::string to_json() const override;

  const std::vector<Merge>& merges() const { return merges_; }

 private:
  void encode_chunk(const std::string& chunk, std::vector<int32_t>& out) const;

  std::vector<Merge> merges_;
  std::vector<std::string> vocab_;                  // id -> bytes
  std::unordered_map<uint64_t, int32_t> merge_id_;  // packed (left, right) -> merged id
};

// Splits text into the chunks BPE merges within (GPT-2's pattern on bytes; bytes >= 0x80 count
// as letters so UTF-8 words stay whole). The chunks concatenate back to `text`.
std::vector<std::string> pretokenize(const std::string& text);

}  // namespace tg
