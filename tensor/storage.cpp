#include "tensor/storage.h"

#include "tensor/cpu_allocator.h"
#include "tensor/cuda_allocator.h"
#include "tensor/error.h"

namespace tg {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  switch (device.type) {
    case DeviceType::CPU: data_ = cpu_allocate(nbytes); break;
#ifdef TG_CUDA
    case DeviceType::CUDA: data_ = cuda_allocate(nbytes, device); break;
#endif
    default:
      throw Error("cannot allocate " + std::to_string(nbytes) + " bytes on " + device.str() + ": " + no_cuda_message());
  }
}

Storage::~Storage() {
  if (device_.is_cpu()) cpu_deallocate(data_, nbytes_);
  else cuda_deallocate(data_, device_);
}

}  // namespace tg
