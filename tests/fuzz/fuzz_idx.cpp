// The IDX reader (data/idx.h) on arbitrary bytes, plain or gzip: zlib passes plain files through,
// so one reader serves both, and the seeds hold both forms. Mutated gzip bytes mostly exercise
// the damaged-stream paths; fuzz_idx_gzip reaches the header checks behind a valid stream.
#include "tests/fuzz/fuzz_idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > tg_fuzz::kMaxInput) return -1;
  static tg_fuzz::ScratchFile file("input-idx-ubyte");
  tg_fuzz::read_as_idx(file.write(data, size));
  return 0;
}
