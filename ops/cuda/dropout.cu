// CUDA dropout with the counter-based mask of ops/cpu/dropout.cpp, bit for bit: the same SplitMix64
// output per element index, the same 24-bit threshold and the same f32 scale, both computed on the
// host exactly as the CPU kernel computes them. The mask costs a few 64-bit multiplies per element,
// far below the memory time of the pass.
#include "ops/cuda/dropout.h"

#include <cmath>

#include "ops/cuda/common.cuh"
#include "ops/cuda/elementwise.cuh"

namespace tg::cuda {

namespace {

// SplitMix64's output for counter i (see ops/cpu/dropout.cpp): its state after i + 1 steps from key,
// through the finaliser.
__device__ __forceinline__ uint64_t mask_bits(uint64_t key, uint64_t i) {
  uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The multiplier of element i: scale when kept, 0 when dropped (a multiply, as on the CPU, so a NaN
// input stays NaN where dropped).
__device__ __forceinline__ float mask_factor(uint64_t key, int64_t i, uint64_t threshold, float scale) {
  return (mask_bits(key, static_cast<uint64_t>(i)) >> 40) >= threshold ? scale : 0.0f;
}

// out (n) = inp * factor(i), or with `accumulate` out (n) += inp * factor(i) (the backward, where
// out is dinp and inp is dout).
template <class T, bool kAccumulate>
struct DropoutBody {
  T* out;
  const T* inp;
  uint64_t key, threshold;
  float scale;
  template <int W>
  __device__ void run(int64_t i) const {
    float x[W];
    load_f32(x, inp + i);
#pragma unroll
    for (int k = 0; k < W; k++) x[k] *= mask_factor(key, i + k, threshold, scale);
    if constexpr (kAccumulate) add_f32<W>(out + i, x);
    else store_f32(out + i, x);
  }
};

// As ops/cpu/dropout.cpp: P(drop) = threshold / 2^24, within 2^-25 of p; the scale in f32.
uint64_t drop_threshold(float p) { return static_cast<uint64_t>(std::llround(static_cast<double>(p) * 16777216.0)); }
float keep_scale(float p) { return 1.0f / (1.0f - p); }

}  // namespace

void dropout_forward(DType dtype, void* out, const void* inp, int64_t n, float p, uint64_t key) {
  TG_DISPATCH_FLOAT(dtype, "dropout", T, {
    launch_pack_loop<T>("dropout_forward", n, all_aligned16({out, inp}),
                        DropoutBody<T, false>{static_cast<T*>(out), static_cast<const T*>(inp), key,
                                              drop_threshold(p), keep_scale(p)});
  });
}

void dropout_backward(DType dtype, void* dinp, const void* dout, int64_t n, float p, uint64_t key) {
  TG_DISPATCH_FLOAT(dtype, "dropout_backward", T, {
    launch_pack_loop<T>("dropout_backward", n, all_aligned16({dinp, dout}),
                        DropoutBody<T, true>{static_cast<T*>(dinp), static_cast<const T*>(dout), key,
                                             drop_threshold(p), keep_scale(p)});
  });
}

}  // namespace tg::cuda
