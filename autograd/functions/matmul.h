// Differentiable matrix products: matmul and linear (the GPT's hot path), on the GEMM kernel.
// Operands may be row-major-contiguous or transposed views (tg::transpose(w, 0, 1), x.transpose(-1, -2)):
// a transposed view is read in place as a transposed operand, not copied.
#pragma once
#include "tensor/tensor.h"

namespace tg {

// a (M,K) @ b (K,N) -> (M,N)
// a (B,M,K) @ b (B,K,N) -> (B,M,N), one product per batch item
// a (..., M, K) @ b (K,N) -> (..., M, N), any number of leading dims on a (flattened into M)
Tensor matmul(const Tensor& a, const Tensor& b);

// x (..., IN), weight (OUT, IN) as in PyTorch, bias (OUT) or an undefined Tensor() for none
// -> y (..., OUT) = x weight^T + bias.
// Backward: dx += dy weight, dweight += dy^T x (GEMMs that accumulate into the gradient buffers
// with beta = 1, no temporaries), dbias += column sums of dy.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

}  // namespace tg
