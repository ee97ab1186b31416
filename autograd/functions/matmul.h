// Differentiable matrix products: matmul and linear (the GPT's hot path), on the GEMM kernel, and
// the two fused Linear variants the transformer uses (GELU after c_fc, the residual add after
// c_proj): on CUDA each is one GEMM with the extra work in its epilogue.
// Outputs take the inputs' dtype (f32; bf16 / f16 on CUDA); all operands share it.
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

// gelu(linear(x, weight, bias)) (the tanh GELU of tg::gelu), keeping the pre-activation
// u = linear(x, weight, bias) for backward: du = gelu'(u) * dy, then linear's backward with du.
// On CUDA the GEMM's epilogue adds the bias, stores u and applies the GELU.
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias);

// residual + linear(x, weight, bias); residual has the output's shape (..., OUT).
// Backward: dresidual += dy, plus linear's backward. On CUDA the GEMM's epilogue adds bias and
// residual.
Tensor linear_residual(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual);

}  // namespace tg
