#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tg {

AugmentDraw augment_image(const uint8_t* in, uint8_t* out, int64_t H, int64_t W, int64_t C,
                          const AugmentOptions& options, Generator& gen) {
  AugmentDraw draw;
  const int64_t pad = options.crop_padding;
  if (pad > 0) {
    draw.shift_y = static_cast<int64_t>(gen.below(2 * pad + 1)) - pad;
    draw.shift_x = static_cast<int64_t>(gen.below(2 * pad + 1)) - pad;
  }
  if (options.flip) draw.flipped = gen.below(2) == 1;

  // Crop, then flip: out(y, x) = cropped(y, W-1-x) when flipped, cropped(y, x) = in(y + shift_y,
  // x + shift_x), and zero where that falls in the padding.
  for (int64_t y = 0; y < H; y++) {
    uint8_t* row = out + y * W * C;
    const int64_t source_y = y + draw.shift_y;
    if (source_y < 0 || source_y >= H) {
      std::memset(row, 0, static_cast<size_t>(W * C));
      continue;
    }
    const uint8_t* source = in + source_y * W * C;
    if (!draw.flipped) {
      // The in-range columns are one run, x in [-shift_x, W - shift_x) clipped to [0, W) (and
      // empty when the padding is wider than the image).
      const int64_t begin = std::clamp<int64_t>(-draw.shift_x, 0, W);
      const int64_t end = std::clamp<int64_t>(W - draw.shift_x, begin, W);
      std::memset(row, 0, static_cast<size_t>(begin * C));
      std::memcpy(row + begin * C, source + (begin + draw.shift_x) * C, static_cast<size_t>((end - begin) * C));
      std::memset(row + end * C, 0, static_cast<size_t>((W - end) * C));
      continue;
    }
    for (int64_t x = 0; x < W; x++) {
      const int64_t source_x = (W - 1 - x) + draw.shift_x;
      if (source_x < 0 || source_x >= W)
        std::memset(row + x * C, 0, static_cast<size_t>(C));
      else
        std::memcpy(row + x * C, source + source_x * C, static_cast<size_t>(C));
    }
  }

  if (options.erase_probability > 0.0 && gen.uniform() < options.erase_probability) {
    const double log_low = std::log(0.3), log_high = std::log(3.3);
    for (int attempt = 0; attempt < 10; attempt++) {
      const double area = static_cast<double>(H * W) * (0.02 + 0.31 * gen.uniform());
      const double ratio = std::exp(log_low + (log_high - log_low) * gen.uniform());
      const int64_t h = std::llround(std::sqrt(area * ratio)), w = std::llround(std::sqrt(area / ratio));
      if (h < 1 || w < 1 || h >= H || w >= W) continue;  // torchvision's rule: strictly inside
      draw.erase_y = static_cast<int64_t>(gen.below(H - h + 1));
      draw.erase_x = static_cast<int64_t>(gen.below(W - w + 1));
      draw.erase_height = h, draw.erase_width = w;
      for (int64_t y = draw.erase_y; y < draw.erase_y + h; y++)
        std::memset(out + (y * W + draw.erase_x) * C, 0, static_cast<size_t>(w * C));
      break;
    }
  }
  return draw;
}

}  // namespace tg
