// The transformer block's second half, x + c_proj(gelu(c_fc(layernorm(x)))), run chunk by chunk
// over the rows so that the (rows, H) hidden activation never exists whole (the fusion planner's
// "blockwise" execution, nn/planner.h).
//
// The unfused path (layernorm, linear_gelu, linear_residual) keeps, per block, the normalised rows
// (rows, C), the pre-activation (rows, H) and the GELU output (rows, H) alive until the backward:
// 9 values per row and C for GPT-2's H = 4C. This function keeps only x itself, which the block's
// residual stream holds anyway. Its backward recomputes each chunk's normalised rows and hidden
// (one more c_fc GEMM per chunk) and accumulates the weight and bias gradients across chunks with
// beta = 1 GEMMs, so the result differs from the unfused one only in the order of those sums.
//
// The chunk loops are ops::blockwise_mlp_forward and _backward (ops/blockwise_mlp.h), which call
// the existing fronts on row slices, so it runs on every device and dtype they serve.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg {

// The parameters of LayerNorm -> c_fc -> GELU -> c_proj. Biases and the LayerNorm weight may be
// undefined Tensor()s (none).
struct MlpWeights {
  Tensor ln_weight, ln_bias;  // (C), (C)
  float ln_eps = 1e-5f;
  Tensor fc_weight, fc_bias;      // (H, C), (H)
  Tensor proj_weight, proj_bias;  // (C, H), (C)
};

// x (..., C) -> x + c_proj(gelu(c_fc(layernorm(x)))) (..., C), chunk_rows rows of x at a time (the
// last chunk holds the rest; a chunk larger than the rows is one chunk); the backward runs chunks
// of ops::blockwise_mlp_backward_chunk_rows(chunk_rows), no fewer than 512 rows (why: there).
// Differentiable in x and every parameter. Throws tg::Error naming "blockwise_mlp", the argument and the shapes when they
// do not fit, or when chunk_rows is not positive.
Tensor blockwise_mlp(const Tensor& x, const MlpWeights& weights, int64_t chunk_rows);

}  // namespace tg
