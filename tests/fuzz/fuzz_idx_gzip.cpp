// The IDX reader (data/idx.h) on arbitrary bytes gzip-compressed here, so every mutation of the
// IDX content reaches the reader through a valid gzip stream (as a .gz dataset file would).
#include <zlib.h>

#include <cstdlib>
#include <vector>

#include "tests/fuzz/fuzz_idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > tg_fuzz::kMaxInput) return -1;
  std::vector<uint8_t> gz(compressBound(size) + 64);
  z_stream stream{};
  // windowBits 15 + 16: the gzip wrapper that .gz files carry.
  if (deflateInit2(&stream, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  stream.next_in = const_cast<Bytef*>(data);
  stream.avail_in = static_cast<uInt>(size);
  stream.next_out = gz.data();
  stream.avail_out = static_cast<uInt>(gz.size());
  if (deflate(&stream, Z_FINISH) != Z_STREAM_END) std::abort();
  gz.resize(stream.total_out);
  deflateEnd(&stream);
  static tg_fuzz::ScratchFile file("input-idx-ubyte.gz");
  tg_fuzz::read_as_idx(file.write(gz.data(), gz.size()));
  return 0;
}
