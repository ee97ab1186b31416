#include "data/bpe_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "tensor/error.h"
#include "tensor/json_excerpt.h"

namespace tg {

static uint64_t pack(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

enum class ByteClass { Letter, Digit, Space, OtherWhitespace, Punctuation };

static ByteClass classify(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return ByteClass::Letter;
  if (c >= '0' && c <= '9') return ByteClass::Digit;
  if (c == ' ') return ByteClass::Space;
  if (c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v') return ByteClass::OtherWhitespace;
  return ByteClass::Punctuation;
}

static bool is_whitespace(ByteClass k) { return k == ByteClass::Space || k == ByteClass::OtherWhitespace; }

// Calls fn(offset, length) for each chunk. GPT-2's rule: " ?letters+ | ?digits+ | ?punct+ |
// whitespace+ (leaving its last space to the word that follows)".
template <class Fn>
static void for_each_chunk(const std::string& text, Fn fn) {
  auto cls = [&](size_t i) { return classify(static_cast<unsigned char>(text[i])); };
  size_t n = text.size(), pos = 0;
  while (pos < n) {
    size_t end = pos;
    ByteClass k = cls(pos);
    if (k == ByteClass::Space && pos + 1 < n && !is_whitespace(cls(pos + 1))) {
      k = cls(pos + 1);  // the space leads the word
      end = pos + 1;
    }
    if (!is_whitespace(k)) {
      while (end < n && cls(end) == k) end++;
    } else {
      while (end < n && is_whitespace(cls(end))) end++;
      // A run of whitespace before a word gives its last space to that word (" the", not "the").
      if (end < n && end - pos > 1 && cls(end - 1) == ByteClass::Space) end--;
    }
    fn(pos, end - pos);
    pos = end;
  }
}

std::vector<std::string> pretokenize(const std::string& text) {
  std::vector<std::string> chunks;
  for_each_chunk(text, [&](size_t pos, size_t length) { chunks.push_back(text.substr(pos, length)); });
  return chunks;
}

BpeTokenizer::BpeTokenizer(std::vector<Merge> merges) : merges_(std::move(merges)) {
  // Check every merge and the total length before spelling any token (see kMaxVocabBytes). The
  // lengths cannot overflow: each is at most twice the limit before the check stops the loop.
  std::vector<uint64_t> length(256, 1);
  uint64_t total = 256;
  for (const Merge& m : merges_) {
    int32_t id = static_cast<int32_t>(length.size());
    TG_CHECK(m.first >= 0 && m.first < id && m.second >= 0 && m.second < id,
             "BpeTokenizer: merge " + std::to_string(id - 256) + " (" + std::to_string(m.first) + ", " +
                 std::to_string(m.second) + ") refers to a token not defined before it");
    length.push_back(length[m.first] + length[m.second]);
    total += length.back();
    TG_CHECK(total <= kMaxVocabBytes, "BpeTokenizer: the first " + std::to_string(id - 255) + " merges spell " +
                                          std::to_string(total) + " bytes of tokens, more than the limit of " +
                                          std::to_string(kMaxVocabBytes) + " (merge " + std::to_string(id - 256) +
                                          " makes a token of " + std::to_string(length.back()) + " bytes)");
  }
  vocab_.reserve(length.size());
  for (int b = 0; b < 256; b++) vocab_.push_back(std::string(1, static_cast<char>(b)));
  for (const Merge& m : merges_) {
    merge_id_.emplace(pack(m.first, m.second), static_cast<int32_t>(vocab_.size()));
    vocab_.push_back(vocab_[m.first] + vocab_[m.second]);
  }
}

BpeTokenizer BpeTokenizer::train(const std::string& text, int64_t vocab_size) {
  TG_CHECK(vocab_size >= 256 && vocab_size <= (int64_t{1} << 30),
           "BpeTokenizer::train: vocab_size must be at least 256 (the bytes), got " + std::to_string(vocab_size));

  // Distinct chunks with their counts: the corpus in a form small enough to update per merge.
  std::unordered_map<std::string, int64_t> chunk_counts;
  for_each_chunk(text, [&](size_t pos, size_t length) { chunk_counts[text.substr(pos, length)]++; });
  std::vector<std::pair<std::string, int64_t>> sorted_chunks(chunk_counts.begin(), chunk_counts.end());
  std::sort(sorted_chunks.begin(), sorted_chunks.end());  // fixed word order: deterministic everywhere
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> freq;
  for (const auto& [chunk, count] : sorted_chunks) {
    words.emplace_back(chunk.begin(), chunk.end());
    for (int32_t& s : words.back()) s = static_cast<unsigned char>(s);
    freq.push_back(count);
  }

  // Pair counts over all words, and for each pair the words that contain it (possibly stale:
  // a word is re-checked when visited). Each merge then touches only the words holding its pair.
  std::unordered_map<uint64_t, int64_t> pair_counts;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;
  auto add_pairs = [&](int32_t w, int64_t sign) {
    const auto& word = words[w];
    for (size_t i = 0; i + 1 < word.size(); i++) {
      uint64_t key = pack(word[i], word[i + 1]);
      int64_t& count = pair_counts[key];
      count += sign * freq[w];
      if (count == 0) pair_counts.erase(key);
      if (sign > 0) pair_words[key].push_back(w);
    }
  };
  for (int32_t w = 0; w < static_cast<int32_t>(words.size()); w++) add_pairs(w, +1);

  std::vector<Merge> merges;
  std::vector<int64_t> visited(words.size(), -1);
  while (256 + static_cast<int64_t>(merges.size()) < vocab_size) {
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [key, count] : pair_counts)
      if (count > best_count || (count == best_count && key < best)) { best = key; best_count = count; }
    if (best_count < 2) break;  // a pair seen once compresses nothing

    int32_t left = static_cast<int32_t>(best >> 32), right = static_cast<int32_t>(best & 0xFFFFFFFFu);
    int32_t id = 256 + static_cast<int32_t>(merges.size());
    merges.emplace_back(left, right);
    std::vector<int32_t> holders = std::move(pair_words[best]);
    pair_words.erase(best);
    for (int32_t w : holders) {
      if (visited[w] == id) continue;  // listed once per occurrence
      visited[w] = id;
      auto& word = words[w];
      bool has_pair = false;
      for (size_t i = 0; i + 1 < word.size() && !has_pair; i++) has_pair = word[i] == left && word[i + 1] == right;
      if (!has_pair) continue;
      add_pairs(w, -1);
      std::vector<int32_t> merged;
      merged.reserve(word.size());
      for (size_t i = 0; i < word.size(); i++) {
        if (i + 1 < word.size() && word[i] == left && word[i + 1] == right) { merged.push_back(id); i++; }
        else merged.push_back(word[i]);
      }
      word = std::move(merged);
      add_pairs(w, +1);
    }
  }
  return BpeTokenizer(std::move(merges));
}

// Applies merges in the order they were learned (lowest id first), which reproduces the
// segmentation training arrived at.
void BpeTokenizer::encode_chunk(const std::string& chunk, std::vector<int32_t>& out) const {
  std::vector<int32_t> symbols(chunk.begin(), chunk.end());
  for (int32_t& s : symbols) s = static_cast<unsigned char>(s);
  while (symbols.size() > 1) {
    int32_t best_id = INT32_MAX;
    for (size_t i = 0; i + 1 < symbols.size(); i++) {
      auto it = merge_id_.find(pack(symbols[i], symbols[i + 1]));
      if (it != merge_id_.end() && it->second < best_id) best_id = it->second;
    }
    if (best_id == INT32_MAX) break;
    const Merge& m = merges_[best_id - 256];
    size_t kept = 0;
    for (size_t i = 0; i < symbols.size(); i++) {
      if (i + 1 < symbols.size() && symbols[i] == m.first && symbols[i + 1] == m.second) { symbols[kept++] = best_id; i++; }
      else symbols[kept++] = symbols[i];
    }
    symbols.resize(kept);
  }
  out.insert(out.end(), symbols.begin(), symbols.end());
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& bytes) const {
  std::vector<int32_t> ids;
  ids.reserve(bytes.size() / 2);
  // Most chunks of a corpus are repeats; caching them makes encoding a large file cheap.
  std::unordered_map<std::string, std::vector<int32_t>> cache;
  for_each_chunk(bytes, [&](size_t pos, size_t length) {
    std::string chunk = bytes.substr(pos, length);
    auto it = cache.find(chunk);
    if (it == cache.end()) {
      std::vector<int32_t> encoded;
      encode_chunk(chunk, encoded);
      it = cache.emplace(std::move(chunk), std::move(encoded)).first;
    }
    ids.insert(ids.end(), it->second.begin(), it->second.end());
  });
  return ids;
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  TG_CHECK(id >= 0 && id < vocab_size(),
           "token id " + std::to_string(id) + " is outside the BPE vocabulary [0, " + std::to_string(vocab_size()) + ")");
  return vocab_[id];
}

std::string BpeTokenizer::to_json() const {
  nlohmann::json merges = nlohmann::json::array();
  for (const Merge& m : merges_) merges.push_back({m.first, m.second});
  nlohmann::json doc = {{"type", "bpe"}, {"vocab_size", vocab_size()}, {"merges", merges}};
  return doc.dump();
}

BpeTokenizer BpeTokenizer::from_json(const std::string& json_text, const std::string& source) {
  nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || doc.value("type", "") != "bpe" || !doc.contains("merges") ||
      !doc["merges"].is_array())
    throw Error("BPE tokenizer in '" + source + "' is malformed (expected {\"type\": \"bpe\", \"merges\": [...]})");
  std::vector<Merge> merges;
  for (const auto& m : doc["merges"]) {
    if (!m.is_array() || m.size() != 2 || !m[0].is_number_integer() || !m[1].is_number_integer())
      throw Error("BPE tokenizer in '" + source + "' has a malformed merge " + json_excerpt(m) + " (expected [left, right])");
    int64_t id = 256 + static_cast<int64_t>(merges.size());
    int64_t left = m[0].get<int64_t>(), right = m[1].get<int64_t>();
    if (left < 0 || left >= id || right < 0 || right >= id)
      throw Error("BPE tokenizer in '" + source + "': merge " + m.dump() + " refers to a token not defined before it");
    merges.emplace_back(static_cast<int32_t>(left), static_cast<int32_t>(right));
  }
  try {
    return BpeTokenizer(std::move(merges));
  } catch (const Error& e) {
    throw Error("BPE tokenizer in '" + source + "': " + e.what());
  }
}

}  // namespace tg
