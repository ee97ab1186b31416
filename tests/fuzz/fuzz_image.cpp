// decode_image_bytes (data/image_file.h: stb_image on PNG, JPEG, BMP, PGM/PPM, ...) on arbitrary
// bytes, at the channel count the input's length picks (0: the file's own, 1, 3), then a resize
// of small results to an odd size, as an image folder with --image-size does.
#include <cstdlib>

#include "data/image_file.h"
#include "tensor/error.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > tg_fuzz::kMaxInput) return -1;
  static const int64_t kChannels[] = {0, 1, 3};
  try {
    tg::DecodedImage image = tg::decode_image_bytes(data, size, "fuzz input", kChannels[size % 3]);
    if (image.pixels.size() != static_cast<size_t>(image.height * image.width * image.channels)) std::abort();
    if (image.height * image.width <= 4096) {
      std::vector<uint8_t> out(7 * 5 * image.channels);
      tg::resize_image(image.pixels.data(), image.height, image.width, image.channels, out.data(), 7, 5);
    }
  } catch (const tg::Error&) {
  }
  return 0;
}
