// load_tokenizer (data/tokenizer.h) on arbitrary JSON text. An accepted tokenizer must round-trip
// text: decode(encode(s)) == s for the first bytes of the input itself (BPE encodes any bytes; a
// char tokenizer may refuse a character with tg::Error), and its to_json() must load again.
#include <cstdlib>

#include "data/tokenizer.h"
#include "tensor/error.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > tg_fuzz::kMaxInput) return -1;
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    std::unique_ptr<tg::Tokenizer> tokenizer = tg::load_tokenizer(text, "fuzz input");
    if (tg::load_tokenizer(tokenizer->to_json(), "to_json")->vocab_size() != tokenizer->vocab_size()) std::abort();
    const std::string sample = text.substr(0, 256);
    if (tokenizer->decode(tokenizer->encode(sample)) != sample) std::abort();
  } catch (const tg::Error&) {
  }
  return 0;
}
