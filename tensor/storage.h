// A ref-counted, device-resident buffer. Tensors are views onto a Storage.
#pragma once
#include <cstddef>
#include <memory>

#include "tensor/device.h"

namespace tg {

// CPU memory is 64-byte aligned (one cache line, one AVX-512 vector) so kernels can use aligned
// loads on contiguous tensors. CUDA memory comes from the caching allocator when built with CUDA.
class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

using StoragePtr = std::shared_ptr<Storage>;

// Bytes currently held by live CPU storages, and the most ever held at once (for memory reports).
size_t cpu_bytes_in_use();
size_t cpu_peak_bytes();

}  // namespace tg
