// 16-byte vector loads and stores of f32 / bf16 / f16 elements, converted to and from f32 in
// registers: kVec = 16 / sizeof(T) elements per access (4 floats or 8 halves), or kVec = 1 for the
// element-at-a-time path that serves sizes and pointers a vector path cannot. The vector forms
// need a 16-byte aligned pointer; the launchers check that on the host.
//
// The halves are moved as 32-bit words and split with integer ops, so the vectors stay in
// registers (a local array of 16-bit elements reinterpreted as a uint4 costs a stack frame).
#pragma once
#include <cstdint>

#include "ops/cuda/common.cuh"

namespace tg::cuda {

template <class T> constexpr int kVec16 = static_cast<int>(16 / sizeof(T));

__device__ __forceinline__ uint32_t half_bits(bf16 x) { return __bfloat16_as_ushort(x); }
__device__ __forceinline__ uint32_t half_bits(f16 x) { return __half_as_ushort(x); }
template <class T> __device__ __forceinline__ T half_from_bits(uint32_t bits);
template <> __device__ __forceinline__ bf16 half_from_bits<bf16>(uint32_t bits) {
  return __ushort_as_bfloat16(static_cast<unsigned short>(bits));
}
template <> __device__ __forceinline__ f16 half_from_bits<f16>(uint32_t bits) {
  return __ushort_as_half(static_cast<unsigned short>(bits));
}

// dst[k] = p[k] for k < kVec, in f32.
template <class T, int kVec>
__device__ __forceinline__ void load_f32(float (&dst)[kVec], const T* p) {
  if constexpr (kVec == 1) {
    dst[0] = to_f32(*p);
  } else {
    static_assert(kVec * sizeof(T) == 16, "vector accesses are 16 bytes");
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
      if constexpr (sizeof(T) == 4) {
        dst[i] = __uint_as_float(words[i]);
      } else {  // two halves per word, the lower-addressed one in the low bits (little-endian)
        dst[2 * i] = to_f32(half_from_bits<T>(words[i] & 0xffffu));
        dst[2 * i + 1] = to_f32(half_from_bits<T>(words[i] >> 16));
      }
    }
  }
}

// p[k] = src[k] rounded to T, for k < kVec.
template <class T, int kVec>
__device__ __forceinline__ void store_f32(T* p, const float (&src)[kVec]) {
  if constexpr (kVec == 1) {
    *p = from_f32<T>(src[0]);
  } else {
    static_assert(kVec * sizeof(T) == 16, "vector accesses are 16 bytes");
    uint32_t words[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
      if constexpr (sizeof(T) == 4) {
        words[i] = __float_as_uint(src[i]);
      } else {
        words[i] = half_bits(from_f32<T>(src[2 * i])) | (half_bits(from_f32<T>(src[2 * i + 1])) << 16);
      }
    }
    *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
  }
}

// src rounded to T and back: the value a store followed by a load would give.
template <class T> __device__ __forceinline__ float round_to(float x) { return to_f32(from_f32<T>(x)); }

}  // namespace tg::cuda
