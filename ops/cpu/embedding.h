// Embedding lookup, f32 rows indexed by i32 ids.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// ids (N) in [0, V), weight (V,C) -> out (N,C): out[n] = weight[ids[n]]. The ids are trusted: the
// front checks the range before calling.
void embedding_forward(float* out, const int32_t* ids, const float* weight, int64_t N, int64_t C);

// dweight (V,C) += scatter of dout (N,C) by ids (N): dweight[ids[n]] += dout[n] for every n, so a
// repeated id gets the sum of its rows. Each element adds its contributions in the order of n,
// whatever the thread count: the result is bit-identical run to run and machine to machine.
void embedding_backward(float* dweight, const float* dout, const int32_t* ids, int64_t N, int64_t C);

TG_CPU_ISA_END
}  // namespace tg::cpu
