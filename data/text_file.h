// Reading a corpus: a file of any size as raw bytes, with the checks a user needs when the path
// is wrong (missing, a directory, unreadable, empty) and a UTF-8 validity scan.
#pragma once
#include <cstdint>
#include <string>

namespace tg {

// The whole file as bytes. Throws tg::Error naming the path when it does not exist, is a
// directory or another non-regular file, cannot be read, or is empty. `what` names the file's
// role in messages ("corpus", "prompt file").
std::string read_text_file(const std::string& path, const std::string& what = "corpus");

// Offset of the first byte that does not start or continue a valid UTF-8 sequence (overlong
// forms, surrogates and code points past U+10FFFF count as invalid), or -1 when all is valid.
int64_t first_invalid_utf8(const std::string& bytes);

// Length of the valid UTF-8 sequence starting at bytes[pos], or 0 when the byte there does not
// start one.
int utf8_sequence_length(const std::string& bytes, size_t pos);

}  // namespace tg
