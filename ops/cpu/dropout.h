// Dropout with a counter-based mask: element i is kept when the i-th output of SplitMix64 started
// at `key` is at or above p * 2^64 (compared on its top 24 bits). The mask is a pure function of
// (key, i), so the kernels split freely across threads, the forward and backward agree without
// storing a mask, and one key (drawn from a seeded tg::Generator) reproduces it exactly.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// inp (N) -> out (N) = keep(key, i) ? inp / (1 - p) : 0, for 0 < p < 1
void dropout_forward(float* out, const float* inp, int64_t n, float p, uint64_t key);
// dout (N) -> dinp (N) += keep(key, i) ? dout / (1 - p) : 0, the forward's mask for the same key
void dropout_backward(float* dinp, const float* dout, int64_t n, float p, uint64_t key);

TG_CPU_ISA_END
}  // namespace tg::cpu
