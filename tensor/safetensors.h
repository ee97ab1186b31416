// Safetensors: the checkpoint format. Python tools (the `safetensors` package, or twenty lines of
// struct + json) read and write the same files.
//
// Layout: an 8-byte little-endian header length N, then N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the data section. Offsets are bytes relative to the start of the data section; every tensor
// is stored contiguous, row-major, little-endian.
//
// The reader is strict, because a checkpoint that loads wrong is worse than one that does not load:
// every field is type-checked, every range bound-checked, and the byte ranges of the tensors must
// tile the data section exactly: no overlaps, no gaps, no trailing bytes. That is what the
// reference implementation (safetensors' Rust crate) enforces too, so a file we accept is one
// Python accepts. Any violation is a tg::Error naming the file and what is wrong.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace tg {

struct SafetensorsData {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in file order (sorted by data offset)
  std::map<std::string, std::string> metadata;          // the "__metadata__" object
  std::string path;                                     // the file it came from, for error messages

  bool contains(const std::string& name) const;
  // Throws tg::Error naming the missing tensor and the file.
  const Tensor& at(const std::string& name) const;
};

// Writes atomically: to "<path>.tmp", fsync, rename over `path`, fsync the directory, so a crash
// leaves either the old file or the new one, never a torn one. Tensors may have any dtype, strides
// and device; they are written contiguous, in the given order. Names must be unique and may not
// be "__metadata__".
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads the whole file into CPU tensors (F32, BF16, F16, I32, U8), each read straight from the
// file into its own storage (std::ifstream, not mmap: see safetensors.cpp).
SafetensorsData load_safetensors(const std::string& path);

// The format's dtype names: "F32", "BF16", "F16", "I32", "U8".
const char* safetensors_dtype_name(DType dtype);

}  // namespace tg
