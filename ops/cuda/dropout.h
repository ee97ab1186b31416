// CUDA launchers for dropout (the CUDA side of ops/cpu/dropout.h). The mask is the CPU's: element i
// is kept when the top 24 bits of SplitMix64's i-th output from `key` are at or above
// llround(p * 2^24), so one key drops the same elements on the CPU and the GPU, and the backward
// recomputes the forward's mask. Elements of `dtype` (F32, BF16 or F16), f32 arithmetic, one
// rounding on store. Run on cuda::stream() without synchronizing.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// inp (N) -> out (N) = inp * (keep(key, i) ? 1 / (1 - p) : 0), for 0 <= p < 1
void dropout_forward(DType dtype, void* out, const void* inp, int64_t n, float p, uint64_t key);
// dout (N) -> dinp (N) += dout * (keep(key, i) ? 1 / (1 - p) : 0), the forward's mask for the same key
void dropout_backward(DType dtype, void* dinp, const void* dout, int64_t n, float p, uint64_t key);

}  // namespace tg::cuda
