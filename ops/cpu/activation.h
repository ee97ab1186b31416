// Activation kernels, elementwise over N floats: GELU (tanh approximation, as in GPT-2), ReLU, tanh,
// sigmoid and SiLU.
// Backward kernels ADD into dinp.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// inp (N) -> out (N) = 0.5 inp (1 + tanh(sqrt(2/pi) (inp + 0.044715 inp^3)))
void gelu_forward(float* out, const float* inp, int64_t n);
// inp, dout (N) -> dinp (N) += dout * gelu'(inp)
void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n);

// inp (N) -> out (N) = max(inp, 0)
void relu_forward(float* out, const float* inp, int64_t n);
// out, dout (N) -> dinp (N) += dout where out > 0 (out > 0 exactly when inp > 0)
void relu_backward(float* dinp, const float* out, const float* dout, int64_t n);

// inp (N) -> out (N) = tanh(inp)
void tanh_forward(float* out, const float* inp, int64_t n);
// out, dout (N) -> dinp (N) += dout * (1 - out^2)
void tanh_backward(float* dinp, const float* out, const float* dout, int64_t n);

// inp (N) -> out (N) = 1 / (1 + exp(-inp))
void sigmoid_forward(float* out, const float* inp, int64_t n);
// inp, dout (N) -> dinp (N) += dout * sigmoid(inp) sigmoid(-inp)
void sigmoid_backward(float* dinp, const float* inp, const float* dout, int64_t n);

// inp (N) -> out (N) = inp * sigmoid(inp)
void silu_forward(float* out, const float* inp, int64_t n);
// inp, dout (N) -> dinp (N) += dout * sigmoid(inp) (1 + inp sigmoid(-inp))
void silu_backward(float* dinp, const float* inp, const float* dout, int64_t n);

TG_CPU_ISA_END
}  // namespace tg::cpu
