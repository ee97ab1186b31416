#include "data/image_file.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "tensor/error.h"

namespace tg {

namespace {

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  struct stat info;
  TG_CHECK(stat(path.c_str(), &info) == 0, "image file '" + path + "' cannot be opened: " + std::strerror(errno));
  TG_CHECK(S_ISREG(info.st_mode), "image file '" + path + "' is not a regular file");
  std::ifstream in(path, std::ios::binary);
  TG_CHECK(in.good(), "image file '" + path + "' cannot be opened: " + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TG_CHECK(!in.bad(), "image file '" + path + "' cannot be read: " + std::strerror(errno));
  return bytes;
}

uint32_t little_endian32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

// stb_image reads past the end of a BMP as zeros instead of failing, so a cut-off BMP would decode
// into an image with a black band, and a 100-byte file whose header says 65285 x 6391 would make
// it allocate and fill 1.25 GB (found by fuzz_image). The header states the file size and where
// the pixels start; stb reads every BMP it accepts as plain rows (it refuses only the RLE
// compressions 1 and 2), so the rows' size is known too: check both against the length.
void check_bmp_length(const uint8_t* bytes, size_t size, const std::string& path) {
  if (size < 26 || bytes[0] != 'B' || bytes[1] != 'M') return;
  const uint64_t length = size;
  const uint64_t stated = little_endian32(&bytes[2]);
  TG_CHECK(stated <= length, "image file '" + path + "' is truncated: its BMP header says " + std::to_string(stated) +
                                 " bytes, found " + std::to_string(length));
  const uint32_t dib_size = little_endian32(&bytes[14]);
  int64_t width = 0, height = 0;
  uint64_t bits = 0;
  auto le16 = [&](size_t at) { return uint64_t(bytes[at]) | (uint64_t(bytes[at + 1]) << 8); };
  if (dib_size == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes, no compression field
    width = static_cast<int64_t>(le16(18)), height = static_cast<int64_t>(le16(20)), bits = le16(24);
  } else {
    if (size < 54 || dib_size < 40) return;  // stb refuses these headers itself
    const uint32_t compression = little_endian32(&bytes[30]);
    if (compression == 1 || compression == 2) return;  // RLE: stb refuses it
    width = static_cast<int32_t>(little_endian32(&bytes[18]));
    height = static_cast<int32_t>(little_endian32(&bytes[22]));
    bits = le16(28);
  }
  const uint64_t offset = little_endian32(&bytes[10]);
  const uint64_t row = ((std::abs(width) * bits + 31) / 32) * 4;  // rows are padded to 4 bytes
  const uint64_t needed = offset + row * std::abs(height);
  TG_CHECK(needed <= length, "image file '" + path + "' is truncated: its BMP pixels need " + std::to_string(needed) +
                                 " bytes, found " + std::to_string(length));
}

// Whatever the format, a file of n bytes cannot hold more than 8256 n pixels: deflate (PNG)
// expands at most 1032:1 and a pixel takes at least one bit, and a JPEG spends at least one bit
// on each 8x8 block of its first component (512 pixels a byte). A header that claims more is
// refused before stb allocates for it.
void check_pixels_fit(int width, int height, size_t size, const std::string& path) {
  const uint64_t pixels = uint64_t(width) * uint64_t(height);
  TG_CHECK(pixels <= 8256 * uint64_t(size), "image file '" + path + "' says it is " + std::to_string(width) + "x" +
                                                std::to_string(height) + ", more pixels than " +
                                                std::to_string(size) + " bytes can encode (corrupt header?)");
}

// The formats tilegrad decodes, told by their first bytes. stb_image reads more (GIF, PSD, TGA,
// HDR, PIC), but TGA has no magic at all, so without this check any bytes that are nothing else
// would go through the TGA decoder: only the decoders of the formats we name ever run.
bool is_supported_format(const uint8_t* bytes, size_t size) {
  static const uint8_t kPng[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= sizeof kPng && std::equal(kPng, kPng + sizeof kPng, bytes)) return true;
  if (size >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8) return true;                     // JPEG
  if (size >= 2 && bytes[0] == 'B' && bytes[1] == 'M') return true;                       // BMP
  return size >= 2 && bytes[0] == 'P' && (bytes[1] == '5' || bytes[1] == '6');            // PGM, PPM
}

// A whole JPEG ends with the end-of-image marker FF D9; some writers pad the file after it with
// zero or 0xFF fill bytes, which are skipped (inside the entropy-coded data a literal FF is always
// stuffed as FF 00, so FF D9 there is a marker). A cut-off file is refused here, before any
// decoding, as truncated. stb_image feeds a scan that runs out zeros; v2.27 then still fails on
// the missing marker ("expected marker", which says nothing of a cut), so this check names the
// cause and does not rest on how a given stb ends. A scan cut short but followed by an FF D9 is
// not caught: only decoding the whole scan could tell, and stb decodes it with the zero fill.
void check_jpeg_end(const uint8_t* bytes, size_t size, const std::string& path) {
  if (size < 2 || bytes[0] != 0xFF || bytes[1] != 0xD8) return;
  size_t end = size;
  while (end > 2 && (bytes[end - 1] == 0x00 || bytes[end - 1] == 0xFF)) end--;
  TG_CHECK(end >= 4 && bytes[end - 2] == 0xFF && bytes[end - 1] == 0xD9,
           "image file '" + path + "' is truncated: the JPEG does not end with an end-of-image marker (FF D9)");
}

// Binary PGM (P5) and PPM (P6): stb_image 2.27 decodes 16-bit ones (maxval above 255) wrongly
// when it converts the channel count (it reads twice the converted buffer: a heap over-read that
// fuzz_image found), and copies nothing when the pixels are cut short, returning uninitialised
// memory as the image. So 16-bit files are refused, and the header's size is checked against the
// length. The header is read as stb reads it: "P5", then width, height and maxval, each after
// whitespace and '#' comments, then one delimiter byte and the pixels.
void check_pnm(const uint8_t* bytes, size_t size, const std::string& path) {
  if (size < 2 || bytes[0] != 'P' || (bytes[1] != '5' && bytes[1] != '6')) return;
  size_t pos = 2;
  auto get = [&]() -> int { return pos < size ? bytes[pos++] : (pos++, -1); };
  int c = get();
  auto number = [&](const char* what) -> uint64_t {
    for (;;) {
      while (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r') c = get();
      if (c != '#') break;
      while (c != -1 && c != '\n' && c != '\r') c = get();
    }
    TG_CHECK(c >= '0' && c <= '9', "image file '" + path + "' is not a valid PGM/PPM image: its header has no " + what);
    uint64_t value = 0;
    for (; c >= '0' && c <= '9'; c = get()) {
      value = value * 10 + static_cast<uint64_t>(c - '0');
      TG_CHECK(value <= (uint64_t(1) << 24), "image file '" + path + "': its PGM/PPM " + what + " is above 2^24");
    }
    return value;
  };
  const uint64_t width = number("width"), height = number("height"), maxval = number("maxval");
  TG_CHECK(maxval <= 255, "image file '" + path + "' is a 16-bit PGM/PPM (maxval " + std::to_string(maxval) +
                              "), which is not supported; convert it to 8 bits");
  const uint64_t needed = pos + width * height * (bytes[1] == '6' ? 3 : 1);
  TG_CHECK(needed <= size, "image file '" + path + "' is truncated: its PGM/PPM header says " + std::to_string(width) +
                               "x" + std::to_string(height) + ", which needs " + std::to_string(needed) +
                               " bytes, found " + std::to_string(size));
}

}  // namespace

DecodedImage decode_image_file(const std::string& path, int64_t channels) {
  TG_CHECK(channels == 0 || channels == 1 || channels == 3,
           "decode_image_file: channels must be 0 (the file's own), 1 or 3, found " + std::to_string(channels));
  std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image_bytes(bytes.data(), bytes.size(), path, channels);
}

DecodedImage decode_image_bytes(const uint8_t* bytes, size_t size, const std::string& name, int64_t channels) {
  TG_CHECK(channels == 0 || channels == 1 || channels == 3,
           "decode_image_bytes: channels must be 0 (the file's own), 1 or 3, found " + std::to_string(channels));
  TG_CHECK(size > 0, "image file '" + name + "' is empty");
  TG_CHECK(size <= static_cast<size_t>(INT32_MAX), "image file '" + name + "' is larger than 2 GB");
  const int length = static_cast<int>(size);
  int width = 0, height = 0, file_channels = 0;
  if (!is_supported_format(bytes, size))
    throw Error("image file '" + name + "' is not a PNG, JPEG, BMP or PGM/PPM image (none of their signatures)");
  if (!stbi_info_from_memory(bytes, length, &width, &height, &file_channels))
    throw Error("image file '" + name + "' is not a PNG, JPEG, BMP or PGM/PPM image (stb_image: " +
                stbi_failure_reason() + ")");
  check_bmp_length(bytes, size, name);
  check_jpeg_end(bytes, size, name);
  check_pnm(bytes, size, name);
  check_pixels_fit(width, height, size, name);
  const int wanted = channels != 0 ? static_cast<int>(channels) : (file_channels <= 2 ? 1 : 3);
  uint8_t* pixels = stbi_load_from_memory(bytes, length, &width, &height, &file_channels, wanted);
  if (pixels == nullptr)
    throw Error("image file '" + name + "' is damaged or truncated: stb_image cannot decode it (" +
                stbi_failure_reason() + ")");
  DecodedImage image;
  image.height = height, image.width = width, image.channels = wanted;
  image.pixels.assign(pixels, pixels + static_cast<size_t>(height) * width * wanted);
  stbi_image_free(pixels);
  return image;
}

DecodedImage grey_to_rgb(const DecodedImage& image) {
  TG_CHECK(image.channels == 1, "grey_to_rgb: expected a 1-channel image, found " + std::to_string(image.channels));
  DecodedImage rgb;
  rgb.height = image.height, rgb.width = image.width, rgb.channels = 3;
  rgb.pixels.resize(image.pixels.size() * 3);
  for (size_t i = 0; i < image.pixels.size(); i++)
    rgb.pixels[3 * i] = rgb.pixels[3 * i + 1] = rgb.pixels[3 * i + 2] = image.pixels[i];
  return rgb;
}

void resize_image(const uint8_t* in, int64_t height, int64_t width, int64_t channels, uint8_t* out,
                  int64_t out_height, int64_t out_width) {
  TG_CHECK(height > 0 && width > 0 && out_height > 0 && out_width > 0 && channels > 0,
           "resize_image: sizes must be positive, found " + std::to_string(height) + "x" + std::to_string(width) +
               " -> " + std::to_string(out_height) + "x" + std::to_string(out_width));
  int ok = stbir_resize_uint8(in, static_cast<int>(width), static_cast<int>(height), 0, out,
                              static_cast<int>(out_width), static_cast<int>(out_height), 0, static_cast<int>(channels));
  TG_CHECK(ok, "resize_image: stb_image_resize failed on " + std::to_string(height) + "x" + std::to_string(width));
}

bool has_image_extension(const std::string& path) {
  size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || path.find('/', dot) != std::string::npos) return false;
  std::string ext = path.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == "png" || ext == "jpg" || ext == "jpeg" || ext == "bmp";
}

ImageSet load_image_file(const std::string& path, int64_t height, int64_t width, int64_t channels) {
  TG_CHECK(height >= 0 && width >= 0 && (height > 0) == (width > 0),
           "load_image_file: height and width must both be positive or both 0, found " + std::to_string(height) +
               " and " + std::to_string(width));
  DecodedImage image = decode_image_file(path, channels);
  ImageSet set;
  set.channels = image.channels;
  set.labels = {0};
  if (height == 0 || (image.height == height && image.width == width)) {
    set.height = image.height, set.width = image.width;
    set.pixels = std::move(image.pixels);
    return set;
  }
  set.height = height, set.width = width;
  set.pixels.resize(static_cast<size_t>(height * width * image.channels));
  resize_image(image.pixels.data(), image.height, image.width, image.channels, set.pixels.data(), height, width);
  return set;
}

}  // namespace tg
