// What code compiled by both g++ and nvcc needs to be one function on the host and the device:
// the TG_HOST_DEVICE marker (empty for g++) and the bit casts between f32 and its 32-bit pattern.
// Plain C++; a .cu file gets __host__ __device__ functions from the same source.
#pragma once
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define TG_HOST_DEVICE __host__ __device__
#else
#define TG_HOST_DEVICE
#endif

namespace tg {

// The bits of an f32 and back: the CUDA intrinsic on the device, memcpy (no aliasing) on the host.
TG_HOST_DEVICE inline uint32_t float_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
#endif
}

TG_HOST_DEVICE inline float bits_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

}  // namespace tg
