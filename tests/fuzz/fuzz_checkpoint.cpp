// load_checkpoint (programs/lib/checkpoint.h) on arbitrary bytes, and then what ./generate does
// with an accepted checkpoint's metadata: rebuild the tokenizer it holds.
#include "data/tokenizer.h"
#include "programs/lib/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > tg_fuzz::kMaxInput) return -1;
  static tg_fuzz::ScratchFile file("checkpoint.safetensors");
  const std::string& path = file.write(data, size);
  try {
    tg::Checkpoint ckpt = tg::load_checkpoint(path);
    tg::describe_checkpoint_kind(ckpt.task.kind);
    auto tokenizer = ckpt.task.metadata.find("tokenizer");
    if (tokenizer != ckpt.task.metadata.end()) tg::load_tokenizer(tokenizer->second, path);
  } catch (const tg::Error&) {
  }
  return 0;
}
