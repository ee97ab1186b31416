// One image file decoded with stb_image (PNG, JPEG, BMP and 8-bit binary PGM/PPM; stb's other
// decoders are never run), and stb's resizer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_set.h"

namespace tg {

struct DecodedImage {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // (height, width, channels)
};

// Decodes `path` at `channels` (1: grey, 3: RGB; stb converts: grey is replicated, colour becomes
// (77 R + 150 G + 29 B) / 256, alpha is dropped) or, with channels = 0, at the file's own count
// reduced to 1 (grey, grey + alpha) or 3 (RGB, RGBA, palette). Throws tg::Error naming the file
// when it cannot be read, is not an image stb can decode, or is truncated.
DecodedImage decode_image_file(const std::string& path, int64_t channels);

// The same on the file's bytes already in memory; `name` stands for the file in messages.
DecodedImage decode_image_bytes(const uint8_t* bytes, size_t size, const std::string& name, int64_t channels);

// Grey to RGB by replication, as stb does (so decoding at 1 then expanding equals decoding at 3).
DecodedImage grey_to_rgb(const DecodedImage& image);

// Resampling with stb_image_resize's defaults (Catmull-Rom filter when enlarging, Mitchell when
// shrinking, edges clamped), on the byte values as they are (no sRGB linearisation), each channel
// on its own.
// in (height, width, channels) -> out (out_height, out_width, channels)
void resize_image(const uint8_t* in, int64_t height, int64_t width, int64_t channels, uint8_t* out,
                  int64_t out_height, int64_t out_width);

// True for the extensions an image folder's files carry (.png, .jpg, .jpeg, .bmp, any case).
bool has_image_extension(const std::string& path);

// One image file as a set of one (label 0) for ./classify: decoded at `channels` (0: the file's
// own, as above) and resized to (height, width) when both are positive and the file's size
// differs; height = width = 0 keeps the file's size.
ImageSet load_image_file(const std::string& path, int64_t height, int64_t width, int64_t channels);

}  // namespace tg
