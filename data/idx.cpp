#include "data/idx.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "tensor/error.h"

namespace tg {

namespace {

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08X", value);
  return text;
}

// zlib reads plain files as they are (gzread passes non-gzip input through), so one reader serves
// both forms; `compressed` only changes the wording of the messages.
struct IdxReader {
  std::string path;
  gzFile file = nullptr;
  bool compressed = false;
  bool cut_short = false;  // the gzip stream ended before its end marker

  explicit IdxReader(const std::string& p) : path(p) {
    struct stat info;
    TG_CHECK(stat(path.c_str(), &info) == 0,
             "IDX file '" + path + "' cannot be opened: " + std::strerror(errno));
    TG_CHECK(S_ISREG(info.st_mode), "IDX file '" + path + "' is not a regular file");
    file = gzopen(path.c_str(), "rb");
    TG_CHECK(file != nullptr, "IDX file '" + path + "' cannot be opened: " + std::strerror(errno));
    gzbuffer(file, 1 << 20);
  }
  ~IdxReader() {
    if (file) gzclose(file);
  }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;

  // Reads up to `want` bytes; fewer only at the end of the data. A damaged gzip stream throws.
  size_t read(uint8_t* out, size_t want) {
    size_t got = 0;
    while (got < want) {
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(want - got, 1u << 30));
      int n = gzread(file, out + got, chunk);
      if (n <= 0) {
        // zlib reports a gzip stream cut short as "unexpected end of file" (Z_BUF_ERROR), either
        // with the last bytes it could inflate or on the next call.
        int code = Z_OK;
        const char* reason = gzerror(file, &code);
        if (code == Z_BUF_ERROR) {
          cut_short = true;  // the size checks report how much arrived
          break;
        }
        TG_CHECK(code == Z_OK || code == Z_STREAM_END,
                 "IDX file '" + path + "' is not a valid gzip stream: " + reason);
        break;
      }
      got += static_cast<size_t>(n);
    }
    compressed = gzdirect(file) == 0;
    return got;
  }
  std::string bytes_word() const { return compressed ? "decompressed bytes" : "bytes"; }
  std::string cut_note() const { return cut_short ? " (its gzip stream ends early)" : ""; }
};

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// Header and body of one IDX file of unsigned bytes with `dims` dimensions; `what` describes the
// expected content for the magic's message.
std::vector<uint8_t> read_idx(const std::string& path, int dims, const char* what, std::vector<int64_t>& shape) {
  IdxReader reader(path);
  const uint32_t expected_magic = 0x00000800u | static_cast<uint32_t>(dims);
  uint8_t magic[4];
  size_t got = reader.read(magic, 4);
  TG_CHECK(got == 4, "IDX file '" + path + "' is truncated: its magic needs 4 " + reader.bytes_word() +
                         ", found " + std::to_string(got) + reader.cut_note());
  const uint32_t found_magic = big_endian(magic);
  TG_CHECK(magic[0] == 0 && magic[1] == 0 && magic[2] == 0x08,
           "IDX file '" + path + "' has the wrong magic: expected " + hex32(expected_magic) + " (" + what +
               "), found " + hex32(found_magic));
  TG_CHECK(magic[3] == dims, "IDX file '" + path + "' has the wrong number of dimensions: expected " +
                                 std::to_string(dims) + " (" + what + ", magic " + hex32(expected_magic) +
                                 "), found " + std::to_string(magic[3]) + " (magic " + hex32(found_magic) + ")");

  std::vector<uint8_t> header(4 * static_cast<size_t>(dims));
  got = reader.read(header.data(), header.size());
  TG_CHECK(got == header.size(), "IDX file '" + path + "' is truncated: its header needs " +
                                     std::to_string(4 + header.size()) + " " + reader.bytes_word() + ", found " +
                                     std::to_string(4 + got) + reader.cut_note());
  shape.assign(dims, 0);
  unsigned __int128 body = 1;  // the product of three uint32 sizes can pass 2^64
  std::string shape_text;
  for (int d = 0; d < dims; d++) {
    shape[d] = big_endian(&header[4 * d]);
    shape_text += (d ? " x " : "") + std::to_string(shape[d]);
    body *= static_cast<uint64_t>(shape[d]);
  }
  for (int d = 0; d < dims; d++)
    TG_CHECK(shape[d] > 0, "IDX file '" + path + "' has an empty dimension: its header says " + shape_text);
  TG_CHECK(body <= (unsigned __int128)(1) << 40,
           "IDX file '" + path + "': its header's sizes " + shape_text + " are not those of a real dataset");

  // Read in slices up to one byte past the expected body, so extra bytes are noticed. The slices
  // start at 64 KB and double up to 64 MB, so a header that lies about its sizes costs at most
  // about twice what the file holds, never the size it claims (a 16-byte file saying 1000 x 1000 x
  // 1000 once cost a zero-filled 64 MB slice).
  const size_t expected = static_cast<size_t>(body);
  std::vector<uint8_t> data;
  size_t have = 0, slice = size_t(64) << 10;
  while (have <= expected) {
    size_t want = std::min<size_t>(expected + 1 - have, slice);
    data.resize(have + want);
    size_t n = reader.read(data.data() + have, want);
    have += n;
    if (n < want) break;
    slice = std::min<size_t>(2 * slice, size_t(64) << 20);
  }
  data.resize(have);
  const std::string header_bytes = std::to_string(4 + header.size());
  TG_CHECK(have >= expected, "IDX file '" + path + "' is truncated: its header (" + shape_text + ") needs " +
                                 std::to_string(expected) + " " + reader.bytes_word() + " after the " +
                                 header_bytes + "-byte header, found " + std::to_string(have) + reader.cut_note());
  TG_CHECK(have == expected, "IDX file '" + path + "' is longer than its header (" + shape_text + ") says: expected " +
                                 std::to_string(expected) + " " + reader.bytes_word() + " after the " +
                                 header_bytes + "-byte header, found more");
  TG_CHECK(!reader.cut_short, "IDX file '" + path + "' is truncated: its gzip stream ends before its end marker");
  return data;
}

}  // namespace

ImageSet read_idx_images(const std::string& images_path) {
  std::vector<int64_t> shape;
  ImageSet set;
  set.pixels = read_idx(images_path, 3, "unsigned-byte images: count, rows, columns", shape);
  set.height = shape[1];
  set.width = shape[2];
  set.channels = 1;
  set.labels.assign(static_cast<size_t>(shape[0]), 0);
  return set;
}

ImageSet read_idx_pair(const std::string& images_path, const std::string& labels_path) {
  std::vector<int64_t> image_shape, label_shape;
  ImageSet set;
  set.pixels = read_idx(images_path, 3, "unsigned-byte images: count, rows, columns", image_shape);
  std::vector<uint8_t> labels = read_idx(labels_path, 1, "unsigned-byte labels: count", label_shape);
  TG_CHECK(image_shape[0] == label_shape[0],
           "IDX files disagree: '" + images_path + "' holds " + std::to_string(image_shape[0]) + " images but '" +
               labels_path + "' holds " + std::to_string(label_shape[0]) + " labels");
  set.height = image_shape[1];
  set.width = image_shape[2];
  set.channels = 1;
  set.labels.assign(labels.begin(), labels.end());
  return set;
}

std::string find_idx_file(const std::string& folder, const std::string& name) {
  for (const std::string& candidate : {folder + "/" + name, folder + "/" + name + ".gz"}) {
    struct stat info;
    if (stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode)) return candidate;
  }
  return "";
}

}  // namespace tg
