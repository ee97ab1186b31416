// load_safetensors (tensor/safetensors.h) on arbitrary bytes. A file it accepts must hold tensors
// whose byte sizes tile the data section, which the reader promises; the target checks that too.
#include <cstdlib>

#include "tensor/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > tg_fuzz::kMaxInput) return -1;
  static tg_fuzz::ScratchFile file("input.safetensors");
  const std::string& path = file.write(data, size);
  try {
    tg::SafetensorsData st = tg::load_safetensors(path);
    uint64_t covered = 0;
    for (const auto& entry : st.tensors) covered += entry.second.nbytes();
    uint64_t header = 0;
    for (int i = 0; i < 8; i++) header |= uint64_t(data[i]) << (8 * i);
    if (8 + header + covered != size) std::abort();  // accepted a file with bytes no tensor owns
  } catch (const tg::Error&) {
  }
  return 0;
}
