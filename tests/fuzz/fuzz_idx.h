// What the two IDX targets share: read one file both as an images file and as the labels of a
// pair (after a valid one-image file), so both header shapes meet every input.
#pragma once
#include <cstdint>
#include <cstdlib>

#include "data/idx.h"
#include "tensor/error.h"
#include "tests/fuzz/fuzz_util.h"

namespace tg_fuzz {

inline void read_as_idx(const std::string& path) {
  try {
    tg::ImageSet set = tg::read_idx_images(path);
    if (set.pixels.size() != set.labels.size() * static_cast<size_t>(set.height * set.width)) std::abort();
  } catch (const tg::Error&) {
  }
  // One 1x1 image: magic 0x00000803, count 1, rows 1, columns 1, one pixel.
  static const uint8_t kOneImage[] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 42};
  static ScratchFile images("one-image-idx3-ubyte");
  static const std::string& images_path = images.write(kOneImage, sizeof kOneImage);
  try {
    tg::ImageSet set = tg::read_idx_pair(images_path, path);
    if (set.labels.size() != 1 || set.pixels.size() != 1) std::abort();
  } catch (const tg::Error&) {
  }
}

}  // namespace tg_fuzz
