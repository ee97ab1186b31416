// CUDA launchers for the sum reductions (the CUDA side of ops/cpu/reduce.h): the input viewed as
// (outer, size, inner), summed over size. Elements of `dtype` (F32, BF16 or F16); sums in f32, one
// rounding on store. Deterministic: every sum is added in an order fixed by the shape alone (no
// atomics, nothing that depends on the GPU model), so a run repeats bit for bit, and the 16-byte
// and the element-wise load paths add the same numbers in the same order. Run on cuda::stream()
// without synchronizing.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// The f32 scratch sum_forward needs for these sizes (partial sums of a first pass); 0 when one pass
// does it, and then `scratch` may be null.
int64_t sum_scratch_floats(int64_t outer, int64_t size, int64_t inner);
// inp (outer, size, inner) -> out (outer, inner) = scale * sum over size   (scale 1/size for a mean)
void sum_forward(DType dtype, void* out, const void* inp, int64_t outer, int64_t size, int64_t inner, float scale,
                 float* scratch);
// dout (outer, inner) -> dinp (outer, size, inner) += scale * dout, broadcast over size
void sum_backward(DType dtype, void* dinp, const void* dout, int64_t outer, int64_t size, int64_t inner, float scale);

}  // namespace tg::cuda
