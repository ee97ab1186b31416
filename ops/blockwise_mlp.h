// The blockwise MLP: a transformer block's second half, out = x + c_proj(gelu(c_fc(layernorm(x)))),
// run chunk by chunk over the rows so that the (rows, H) hidden activation never exists whole; its
// backward recomputes each chunk's normalised rows and hidden instead of reading saved ones (the
// fusion planner's "blockwise" execution, nn/planner.h; autograd/functions/blockwise_mlp.h).
//
// These fronts have no kernel of their own: they call the layernorm, linear (with its GELU and
// residual epilogues), matmul, gelu and column-sum fronts on row slices, so they serve every device
// and dtype those serve. On the CPU the chunks are shared out among the OpenMP threads, one chunk
// per thread at a time with the kernels inside running on that thread alone: each core keeps its
// chunk's hidden in its own L2 (the planner sizes a chunk to the L2 of one core), and a call opens
// one parallel region instead of one per kernel per chunk. On CUDA the chunks run in order on the
// stream.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg::ops {

// The parameters of LayerNorm -> c_fc -> GELU -> c_proj. Biases and the LayerNorm weight may be
// undefined Tensor()s (none). All contiguous, x's dtype and device.
struct MlpParams {
  Tensor ln_weight, ln_bias;  // (C), (C)
  float ln_eps = 1e-5f;
  Tensor fc_weight, fc_bias;      // (H, C), (H)
  Tensor proj_weight, proj_bias;  // (C, H), (C)
};

// The gradients blockwise_mlp_backward adds into; any may be undefined (not wanted).
struct MlpGrads {
  Tensor x;                       // (rows, C)
  Tensor ln_weight, ln_bias;      // (C), (C)
  Tensor fc_weight, fc_bias;      // (H, C), (H)
  Tensor proj_weight, proj_bias;  // (C, H), (C)
};

// Checks x (rows, C) and the parameters' shapes against each other and chunk_rows > 0; returns H.
// Throws tg::Error naming "blockwise_mlp", the argument, the expected and the found shapes.
int64_t check_blockwise_mlp(const Tensor& x, const MlpParams& params, int64_t chunk_rows);

// x (rows, C) -> out (rows, C) = x + c_proj(gelu(c_fc(layernorm(x)))), chunk_rows rows at a time
// (the last chunk holds the rest). out contiguous, not x.
void blockwise_mlp_forward(Tensor& out, const Tensor& x, const MlpParams& params, int64_t chunk_rows);

// From dout (rows, C) and the forward's x and parameters: grads.x += dout + the MLP's input
// gradient, and every parameter gradient +=. The weight and bias gradients are sums over the rows;
// the chunks' partial sums are added with beta = 1 GEMMs (on the CPU each thread's chunks into its
// own partial, the partials then added in thread order), so they differ from the unfused sums only
// in the order of the additions, and repeat bit for bit at a given thread count.
void blockwise_mlp_backward(MlpGrads& grads, const Tensor& dout, const Tensor& x, const MlpParams& params,
                            int64_t chunk_rows);

// The chunk the backward runs when the forward ran chunk_rows: at least kBlockwiseBackwardMinRows.
// The forward's chunk is sized for its hidden to stay in one core's L2, but the backward holds
// three (m, H) buffers, which no L2 holds at that m anyway, and each chunk's weight-gradient GEMMs
// read and write the whole (H, C) gradient with only m rows of work: measured on one core
// (bench/bench_blockwise_mlp.cpp's shapes), chunks of 128 rows made those two GEMMs 18% slower
// than one unchunked GEMM at the medium preset's shapes, chunks of 512 rows 4%. The output and dx
// do not depend on the chunk (each row's values come out of the same per-row kernels).
constexpr int64_t kBlockwiseBackwardMinRows = 512;
int64_t blockwise_mlp_backward_chunk_rows(int64_t chunk_rows);

}  // namespace tg::ops
