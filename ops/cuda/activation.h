// CUDA launchers for the activation kernels (the CUDA side of ops/cpu/activation.h), elementwise over
// n elements of `dtype` (F32, BF16 or F16): load, compute in f32, round once on store. Backward
// launchers ADD into dinp (read, add in f32, round). All run on cuda::stream() without synchronizing.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// inp (N) -> out (N) = 0.5 inp (1 + tanh(sqrt(2/pi) (inp + 0.044715 inp^3)))
void gelu_forward(DType dtype, void* out, const void* inp, int64_t n);
// inp, dout (N) -> dinp (N) += dout * gelu'(inp)
void gelu_backward(DType dtype, void* dinp, const void* inp, const void* dout, int64_t n);

// inp (N) -> out (N) = max(inp, 0)
void relu_forward(DType dtype, void* out, const void* inp, int64_t n);
// out, dout (N) -> dinp (N) += dout where out > 0
void relu_backward(DType dtype, void* dinp, const void* out, const void* dout, int64_t n);

// inp (N) -> out (N) = tanh(inp)
void tanh_forward(DType dtype, void* out, const void* inp, int64_t n);
// out, dout (N) -> dinp (N) += dout * (1 - out^2)
void tanh_backward(DType dtype, void* dinp, const void* out, const void* dout, int64_t n);

// inp (N) -> out (N) = 1 / (1 + exp(-inp))
void sigmoid_forward(DType dtype, void* out, const void* inp, int64_t n);
// inp, dout (N) -> dinp (N) += dout * sigmoid(inp) sigmoid(-inp)
void sigmoid_backward(DType dtype, void* dinp, const void* inp, const void* dout, int64_t n);

// inp (N) -> out (N) = inp * sigmoid(inp)
void silu_forward(DType dtype, void* out, const void* inp, int64_t n);
// inp, dout (N) -> dinp (N) += dout * sigmoid(inp) (1 + inp sigmoid(-inp))
void silu_backward(DType dtype, void* dinp, const void* inp, const void* dout, int64_t n);

}  // namespace tg::cuda
