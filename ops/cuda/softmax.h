// CUDA launchers for softmax and log-softmax over the last dimension (the CUDA side of
// ops/cpu/softmax.h): rows independent, elements of `dtype` (F32, BF16 or F16), everything inside
// in f32 (max, exp, sums), one rounding on store. The row maximum is subtracted first, as on the
// CPU, with the same answers for rows of -inf (NaN) and NaN entries (NaN). Backward launchers ADD
// into dinp. Deterministic (fixed-order warp/block sums); run on cuda::stream() without
// synchronizing.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// inp (rows, C) -> out (rows, C) = exp(inp - max) / sum(exp(inp - max))
void softmax_forward(DType dtype, void* out, const void* inp, int64_t rows, int64_t C);
// out, dout (rows, C) -> dinp (rows, C) += out * (dout - sum_C(dout * out))
void softmax_backward(DType dtype, void* dinp, const void* out, const void* dout, int64_t rows, int64_t C);

// inp (rows, C) -> out (rows, C) = (inp - max) - log(sum(exp(inp - max)))
void log_softmax_forward(DType dtype, void* out, const void* inp, int64_t rows, int64_t C);
// out, dout (rows, C) -> dinp (rows, C) += dout - exp(out) * sum_C(dout)
void log_softmax_backward(DType dtype, void* dinp, const void* out, const void* dout, int64_t rows, int64_t C);

}  // namespace tg::cuda
