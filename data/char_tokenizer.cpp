#include "data/char_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "data/text_file.h"
#include "tensor/error.h"
#include "tensor/json_excerpt.h"

namespace tg {

// Calls fn(symbol, byte offset, byte length) for each character of `bytes`.
template <class Fn>
static void for_each_symbol(const std::string& bytes, Fn fn) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    int length = utf8_sequence_length(bytes, pos);
    uint32_t symbol;
    if (length == 0) {
      symbol = CharTokenizer::kInvalidByteBase + static_cast<unsigned char>(bytes[pos]);
      length = 1;
    } else {
      symbol = static_cast<unsigned char>(bytes[pos]);
      if (length > 1) {
        symbol &= 0xFFu >> (length + 1);
        for (int i = 1; i < length; i++) symbol = (symbol << 6) | (static_cast<unsigned char>(bytes[pos + i]) & 0x3F);
      }
    }
    fn(symbol, pos, length);
    pos += length;
  }
}

static std::string symbol_bytes(uint32_t symbol) {
  std::string out;
  if (symbol >= CharTokenizer::kInvalidByteBase) out += static_cast<char>(symbol - CharTokenizer::kInvalidByteBase);
  else if (symbol < 0x80) out += static_cast<char>(symbol);
  else if (symbol < 0x800) { out += static_cast<char>(0xC0 | (symbol >> 6)); out += static_cast<char>(0x80 | (symbol & 0x3F)); }
  else if (symbol < 0x10000) {
    out += static_cast<char>(0xE0 | (symbol >> 12));
    out += static_cast<char>(0x80 | ((symbol >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (symbol & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (symbol >> 18));
    out += static_cast<char>(0x80 | ((symbol >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((symbol >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (symbol & 0x3F));
  }
  return out;
}

CharTokenizer::CharTokenizer(std::vector<uint32_t> symbols) : symbols_(std::move(symbols)) {
  for (size_t i = 0; i < symbols_.size(); i++) {
    bool fresh = ids_.emplace(symbols_[i], static_cast<int32_t>(i)).second;
    TG_CHECK(fresh, "CharTokenizer: symbol " + std::to_string(symbols_[i]) + " appears twice in the vocabulary");
  }
}

CharTokenizer CharTokenizer::train(const std::string& text) {
  // A bitmap over all symbols is cheaper than a set on a multi-megabyte corpus.
  std::vector<bool> seen(kInvalidByteBase + 256, false);
  for_each_symbol(text, [&](uint32_t symbol, size_t, int) { seen[symbol] = true; });
  std::vector<uint32_t> symbols;
  for (uint32_t s = 0; s < seen.size(); s++)
    if (seen[s]) symbols.push_back(s);
  return CharTokenizer(std::move(symbols));
}

std::vector<int32_t> CharTokenizer::encode(const std::string& bytes) const {
  std::vector<int32_t> ids;
  ids.reserve(bytes.size());
  for_each_symbol(bytes, [&](uint32_t symbol, size_t pos, int length) {
    auto it = ids_.find(symbol);
    if (it == ids_.end())
      throw Error("character '" + bytes.substr(pos, length) + "' at byte " + std::to_string(pos) +
                  " is not in the tokenizer's vocabulary of " + std::to_string(symbols_.size()) +
                  " characters (the characters of the training corpus)");
    ids.push_back(it->second);
  });
  return ids;
}

std::string CharTokenizer::token_bytes(int32_t id) const {
  TG_CHECK(id >= 0 && id < vocab_size(),
           "token id " + std::to_string(id) + " is outside the char vocabulary [0, " + std::to_string(vocab_size()) + ")");
  return symbol_bytes(symbols_[id]);
}

std::string CharTokenizer::to_json() const {
  // Symbols are stored as numbers, not strings: invalid bytes have no JSON string form.
  nlohmann::json doc = {{"type", "char"}, {"symbols", symbols_}};
  return doc.dump();
}

CharTokenizer CharTokenizer::from_json(const std::string& json_text, const std::string& source) {
  nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || doc.value("type", "") != "char" || !doc.contains("symbols") ||
      !doc["symbols"].is_array() || doc["symbols"].empty())
    throw Error("char tokenizer in '" + source + "' is malformed (expected {\"type\": \"char\", \"symbols\": [...]})");
  std::vector<uint32_t> symbols;
  for (const auto& s : doc["symbols"]) {
    if (!s.is_number_unsigned() || s.get<uint64_t>() >= kInvalidByteBase + 256)
      throw Error("char tokenizer in '" + source + "' has an invalid symbol " + json_excerpt(s));
    symbols.push_back(s.get<uint32_t>());
  }
  if (!std::is_sorted(symbols.begin(), symbols.end()))
    throw Error("char tokenizer in '" + source + "' has symbols out of order");
  return CharTokenizer(std::move(symbols));
}

}  // namespace tg
