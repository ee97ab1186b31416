#include "data/tokenizer.h"

#include <nlohmann/json.hpp>

#include "data/bpe_tokenizer.h"
#include "data/char_tokenizer.h"
#include "tensor/error.h"

namespace tg {

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (int32_t id : ids) text += token_bytes(id);
  return text;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& json_text, const std::string& source) {
  nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("type") || !doc["type"].is_string())
    throw Error("tokenizer in '" + source + "' is not valid tokenizer JSON (expected an object with a \"type\")");
  std::string type = doc["type"].get<std::string>();
  if (type == "char") return std::make_unique<CharTokenizer>(CharTokenizer::from_json(json_text, source));
  if (type == "bpe") return std::make_unique<BpeTokenizer>(BpeTokenizer::from_json(json_text, source));
  throw Error("tokenizer in '" + source + "' has unknown type '" + type + "' (expected char or bpe)");
}

}  // namespace tg
