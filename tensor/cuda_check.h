// Checking every CUDA runtime call and kernel launch. Included only by code built with TG_CUDA
// (.cu files and the #ifdef TG_CUDA parts of .cpp files).
//
//   TG_CUDA_CHECK(cudaMemcpy(...));                  // throws tg::Error naming the call, file, line
//   my_kernel<<<grid, block, 0, cuda::stream()>>>(...);
//   TG_CUDA_CHECK_LAUNCH("my_kernel");               // launch errors; with TG_CUDA_SYNC=1 also
//                                                    // waits, so a fault names the right kernel
#pragma once
#ifdef TG_CUDA
#include <cuda_runtime.h>

namespace tg::cuda {

// The one stream every kernel and copy of tilegrad runs on. A single in-order stream is what makes
// the caching allocator's immediate reuse of freed blocks safe.
inline cudaStream_t stream() { return cudaStreamLegacy; }

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* call, const char* file, int line);
// cudaGetLastError after a launch; also synchronizes when the environment sets TG_CUDA_SYNC=1.
void check_launch(const char* kernel, const char* file, int line);

}  // namespace tg::cuda

#define TG_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    cudaError_t tg_cuda_error_ = (call);                                                 \
    if (tg_cuda_error_ != cudaSuccess)                                                   \
      ::tg::cuda::throw_cuda_error(tg_cuda_error_, #call, __FILE__, __LINE__);           \
  } while (0)

#define TG_CUDA_CHECK_LAUNCH(kernel_name) ::tg::cuda::check_launch(kernel_name, __FILE__, __LINE__)

#endif  // TG_CUDA
