// Softmax and log-softmax over the last dimension, rows independent. Both subtract the row maximum
// before exponentiating, so logits of any size give finite results. Backward kernels ADD into dinp.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// inp (rows, C) -> out (rows, C) = exp(inp - max) / sum(exp(inp - max))
void softmax_forward(float* out, const float* inp, int64_t rows, int64_t C);
// out, dout (rows, C) -> dinp (rows, C) += out * (dout - sum_C(dout * out))
void softmax_backward(float* dinp, const float* out, const float* dout, int64_t rows, int64_t C);

// inp (rows, C) -> out (rows, C) = inp - max - log(sum(exp(inp - max)))
void log_softmax_forward(float* out, const float* inp, int64_t rows, int64_t C);
// out, dout (rows, C) -> dinp (rows, C) += dout - exp(out) * sum_C(dout)
void log_softmax_backward(float* dinp, const float* out, const float* dout, int64_t rows, int64_t C);

TG_CPU_ISA_END
}  // namespace tg::cpu
