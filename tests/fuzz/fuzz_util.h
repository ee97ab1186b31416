// What the fuzz targets share: the input bound and a scratch file for readers that take a path.
//
// A target returns normally when the reader accepts the bytes or throws tg::Error (the expected
// outcome for garbage). Anything else is a finding that libFuzzer reports and keeps: a sanitizer
// report, a leak, a hang, or another exception type (it escapes and aborts the process).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tg_fuzz {

// Inputs above 1 MB are refused (LLVMFuzzerTestOneInput returns -1, so they never enter the
// corpus): a header that asks for gigabytes must be refused by the reader because it disagrees
// with the file, not because the fuzzer ran out of memory on a large input.
constexpr size_t kMaxInput = size_t(1) << 20;

// One file per process and name, in /dev/shm when there is one (no disk writes per run), removed
// when the process exits normally. `name` may carry the extension the reader expects.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& name) {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    path_ = std::string(dir) + "/tg_fuzz_" + std::to_string(getpid()) + "_" + name;
  }
  ~ScratchFile() { std::remove(path_.c_str()); }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  // Replaces the file's contents with `bytes` and returns its path.
  const std::string& write(const void* bytes, size_t size) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (f == nullptr || (size > 0 && std::fwrite(bytes, 1, size, f) != size) || std::fclose(f) != 0) {
      std::perror(path_.c_str());
      std::abort();  // the harness failing is not a finding about the reader; stop loudly
    }
    return path_;
  }

 private:
  std::string path_;
};

}  // namespace tg_fuzz
