// A ref-counted, device-resident buffer. Tensors are views onto a Storage.
#pragma once
#include <cstddef>
#include <memory>

#include "tensor/device.h"

namespace tg {

// CPU memory comes from tensor/cpu_allocator.h (64-byte aligned, freed large blocks cached for
// reuse), CUDA memory from tensor/cuda_allocator.h (a caching allocator per device). data() is a
// device pointer for a CUDA storage: host code reads it only through copies (Tensor::to).
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

}  // namespace tg
