#include "data/image_set.h"

#include <cmath>
#include <cstring>

#include "tensor/error.h"

namespace tg {

ImageSet select_images(const ImageSet& set, const std::vector<int64_t>& indices) {
  ImageSet out;
  out.height = set.height, out.width = set.width, out.channels = set.channels;
  const int64_t bytes = set.image_bytes();
  out.pixels.resize(static_cast<size_t>(bytes) * indices.size());
  out.labels.resize(indices.size());
  for (size_t i = 0; i < indices.size(); i++) {
    TG_CHECK(indices[i] >= 0 && indices[i] < set.size(),
             "select_images: index " + std::to_string(indices[i]) + " is outside a set of " +
                 std::to_string(set.size()) + " images");
    std::memcpy(out.pixels.data() + i * bytes, set.image(indices[i]), static_cast<size_t>(bytes));
    out.labels[i] = set.labels[indices[i]];
  }
  return out;
}

void channel_mean_std(const ImageSet& set, std::vector<float>& mean, std::vector<float>& std) {
  TG_CHECK(set.size() > 0 && set.channels > 0, "channel_mean_std: the image set is empty");
  const int64_t C = set.channels;
  std::vector<uint64_t> histogram(static_cast<size_t>(C) * 256, 0);
  const uint8_t* pixel = set.pixels.data();
  for (size_t i = 0; i < set.pixels.size(); i += C, pixel += C)
    for (int64_t c = 0; c < C; c++) histogram[c * 256 + pixel[c]]++;
  mean.assign(C, 0.0f);
  std.assign(C, 0.0f);
  for (int64_t c = 0; c < C; c++) {
    double count = 0, sum = 0;
    for (int v = 0; v < 256; v++) count += histogram[c * 256 + v], sum += histogram[c * 256 + v] * (v / 255.0);
    double m = sum / count, squares = 0;
    for (int v = 0; v < 256; v++) squares += histogram[c * 256 + v] * (v / 255.0 - m) * (v / 255.0 - m);
    mean[c] = static_cast<float>(m);
    std[c] = static_cast<float>(std::sqrt(squares / count));
  }
}

}  // namespace tg
