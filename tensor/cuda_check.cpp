#include "tensor/cuda_check.h"

#ifdef TG_CUDA
#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor/error.h"

namespace tg::cuda {

void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line) {
  throw Error(std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " +
              cudaGetErrorName(error) + " (" + cudaGetErrorString(error) + ")");
}

static bool sync_after_launch() {
  static const bool sync = [] {
    const char* value = std::getenv("TG_CUDA_SYNC");
    return value && std::strcmp(value, "0") != 0;
  }();
  return sync;
}

void check_launch(const char* kernel, const char* file, int line) {
  cudaError_t error = cudaGetLastError();
  if (error == cudaSuccess && sync_after_launch()) error = cudaStreamSynchronize(stream());
  if (error != cudaSuccess)
    throw Error(std::string("kernel ") + kernel + " failed at " + file + ":" + std::to_string(line) + ": " +
                cudaGetErrorName(error) + " (" + cudaGetErrorString(error) + ")");
}

}  // namespace tg::cuda
#endif  // TG_CUDA
