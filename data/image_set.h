// Decoded images in memory: one uint8 array of shape (count, height, width, channels), row-major
// (NHWC, the layout of the whole CNN path), and one int32 label per image.
//
// Kept as bytes, not floats: a 60000-image set of 28x28 greys is 47 MB instead of 188 MB, and the
// loader normalises each batch through a 256-entry table per channel as it assembles it.
#pragma once
#include <cstdint>
#include <vector>

namespace tg {

struct ImageSet {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // (count, height, width, channels)
  std::vector<int32_t> labels;  // (count)
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t image_bytes() const { return height * width * channels; }
  const uint8_t* image(int64_t i) const { return pixels.data() + i * image_bytes(); }
};

// The images of `set` at `indices`, in that order (splits and subsets).
ImageSet select_images(const ImageSet& set, const std::vector<int64_t>& indices);

// Per-channel mean and standard deviation (population, not sample) of every pixel of `set`, in
// [0, 1] pixel units. Counted through one 256-bin histogram per channel, so exact up to the final
// double arithmetic whatever the set's size.
void channel_mean_std(const ImageSet& set, std::vector<float>& mean, std::vector<float>& std);

}  // namespace tg
