// The interface both tokenizers share, and loading either one back from its saved JSON.
//
// A tokenizer is trained on the corpus, saved next to the checkpoints (tokenizer.json, and inside
// each checkpoint's metadata), and loaded by ./generate, so that a model always meets the same
// ids it was trained on.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tg {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string type() const = 0;  // "char" or "bpe"
  virtual int64_t vocab_size() const = 0;
  // Throws tg::Error naming the first piece of text the vocabulary cannot express.
  virtual std::vector<int32_t> encode(const std::string& bytes) const = 0;
  // The bytes of one token; decoding concatenates them, so a stream of tokens can be printed
  // as it is sampled. Throws tg::Error for an id outside the vocabulary.
  virtual std::string token_bytes(int32_t id) const = 0;
  // The whole tokenizer as one JSON document, with a "type" field that load_tokenizer reads.
  virtual std::string to_json() const = 0;

  std::string decode(const std::vector<int32_t>& ids) const;
};

// Rebuilds a tokenizer from to_json()'s text. Throws tg::Error naming `source` (a file or
// checkpoint) when the text is not a tokenizer this build understands.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& json_text, const std::string& source);

}  // namespace tg
