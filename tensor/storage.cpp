#include "tensor/storage.h"

#include "tensor/cpu_allocator.h"
#include "tensor/error.h"

namespace tg {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (!device.is_cpu())
    throw Error("cannot allocate " + std::to_string(nbytes) + " bytes on " + device.str() + ": " + no_cuda_message());
  data_ = cpu_allocate(nbytes);
}

Storage::~Storage() { cpu_deallocate(data_, nbytes_); }

}  // namespace tg
