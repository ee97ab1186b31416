// Sum reductions over one dimension, viewing the input as (outer, size, inner): summing dimension d
// of shape S has outer = S[0] * .. * S[d-1], size = S[d], inner = S[d+1] * .. ; the sum of all
// elements is outer = inner = 1. Sums are accurate for millions of elements: contiguous runs and
// columns alike add in short float blocks (4096 elements; 64 rows) whose results are added in double.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// inp (outer, size, inner) -> out (outer, inner) = scale * sum over size   (scale 1/size for a mean)
void sum_forward(float* out, const float* inp, int64_t outer, int64_t size, int64_t inner, float scale);
// dout (outer, inner) -> dinp (outer, size, inner) += scale * dout, broadcast over size
void sum_backward(float* dinp, const float* dout, int64_t outer, int64_t size, int64_t inner, float scale);

TG_CPU_ISA_END
}  // namespace tg::cpu
