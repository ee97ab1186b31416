#include "data/text_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tensor/error.h"

namespace tg {

std::string read_text_file(const std::string& path, const std::string& what) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0)
    throw Error(what + " '" + path + "' cannot be opened: " + std::strerror(errno));
  if (S_ISDIR(info.st_mode)) throw Error(what + " '" + path + "' is a directory, expected a text file");
  if (!S_ISREG(info.st_mode)) throw Error(what + " '" + path + "' is not a regular file");

  FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw Error(what + " '" + path + "' cannot be read: " + std::strerror(errno));
  std::string bytes;
  bytes.resize(static_cast<size_t>(info.st_size));
  size_t got = bytes.empty() ? 0 : std::fread(&bytes[0], 1, bytes.size(), file);
  bool failed = std::ferror(file) != 0;
  int saved_errno = errno;
  std::fclose(file);
  if (failed) throw Error(what + " '" + path + "' cannot be read: " + std::strerror(saved_errno));
  bytes.resize(got);  // the file may have shrunk between stat and read
  if (bytes.empty()) throw Error(what + " '" + path + "' is empty");
  return bytes;
}

int utf8_sequence_length(const std::string& bytes, size_t pos) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  unsigned char lead = byte(pos);
  if (lead < 0x80) return 1;
  int length;
  uint32_t code;
  if ((lead & 0xE0) == 0xC0) { length = 2; code = lead & 0x1F; }
  else if ((lead & 0xF0) == 0xE0) { length = 3; code = lead & 0x0F; }
  else if ((lead & 0xF8) == 0xF0) { length = 4; code = lead & 0x07; }
  else return 0;
  if (pos + length > bytes.size()) return 0;
  for (int i = 1; i < length; i++) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(pos + i) & 0x3F);
  }
  // The shortest form only, no surrogates, nothing past the Unicode range: what RFC 3629 allows.
  static const uint32_t kMinimum[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < kMinimum[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return length;
}

int64_t first_invalid_utf8(const std::string& bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    int length = utf8_sequence_length(bytes, pos);
    if (length == 0) return static_cast<int64_t>(pos);
    pos += length;
  }
  return -1;
}

}  // namespace tg
