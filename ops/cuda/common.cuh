// What every CUDA kernel file shares: element types, f32 conversion, dtype dispatch, launch sizing
// and deterministic warp/block reductions. Device code only; include from .cu files.
//
// Storage types: float (f32), __nv_bfloat16 (bf16), __half (f16). Kernels load elements, compute
// in f32 and round once on store, so a bf16 kernel differs from the f32 one only by the rounding
// of its inputs and outputs.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "tensor/cuda_check.h"
#include "tensor/dtype.h"
#include "tensor/error.h"

namespace tg::cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(f16 x) { return __half2float(x); }

template <class T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ f16 from_f32<f16>(float x) { return __float2half_rn(x); }

// Runs the statement with `T` bound to the storage type of `dtype` (f32, bf16 or f16); any other
// dtype throws naming `op`.
//   TG_DISPATCH_FLOAT(dtype, "gelu_forward", T, { gelu_kernel<T><<<...>>>(...); });
#define TG_DISPATCH_FLOAT(dtype, op, T, ...)                                                   \
  do {                                                                                         \
    switch (dtype) {                                                                           \
      case ::tg::DType::F32: { using T = float; __VA_ARGS__; break; }                          \
      case ::tg::DType::BF16: { using T = ::tg::cuda::bf16; __VA_ARGS__; break; }              \
      case ::tg::DType::F16: { using T = ::tg::cuda::f16; __VA_ARGS__; break; }               \
      default:                                                                                 \
        throw ::tg::Error(std::string(op) + ": no CUDA kernel for dtype " + ::tg::dtype_name(dtype)); \
    }                                                                                          \
  } while (0)

// True when p sits on a 16-byte boundary, the condition of every 16-byte vector access; true for
// nullptr too (an absent operand is never accessed, so it does not stop a vector path).
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, never more than needed.
inline unsigned grid_for(int64_t n, int threads, int max_blocks = 65535 * 8) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > max_blocks) blocks = max_blocks;
  return static_cast<unsigned>(blocks);
}

// Sum over the 32 lanes of a warp, the same tree on every run (butterfly), so results are
// deterministic. Every lane gets the total.
__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024) in a fixed order;
// every thread gets the total. `scratch` holds 32 floats of shared memory; the call begins with a
// barrier so the same scratch can be reused by consecutive calls.
__device__ __forceinline__ float block_sum(float x, float* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  x = warp_sum(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(x);
}
__device__ __forceinline__ float block_max(float x, float* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(x);
}

}  // namespace tg::cuda
