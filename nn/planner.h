// The fusion planner: for each transformer block, whether its activations outweigh its weights,
// and so whether to run the block's matmuls chunk by chunk over the tokens, and with how many
// tokens per chunk.
//
// The inequality. A block holds about 12*d^2 weights (the attention's QKV and output projections,
// 3d^2 + d^2, and the MLP's two 4d-wide layers, 8d^2) and, for n sequences of c tokens, about
// 7*n*c*d activations that matter here (the MLP's 4d hidden, the 3d QKV: 7d per token). Passing
// every token at once reads each weight once; chunking reads the weights once per chunk but keeps
// a chunk's activations in fast memory. Chunking pays when the activations outweigh the weights:
//   7*n*c*d > 12*d^2   <=>   c > 12/(7n) * d.
// For LLaMA-7B (d = 4096) that is c > ~7,000 tokens at n = 1 and c > ~900 at n = 8.
//
// The chunk. m tokens per chunk, the largest for which the chunk's largest activation, the MLP
// hidden of m*4d values, fits the fast memory (the L2 of one core on the CPU), and no smaller than
// keeps the weights streaming from dominating: a chunk's (m,d)x(d,4d) product does 2*m*4d^2 FLOPs
// on 4d^2 weight values, 2m/bytes_per_value FLOPs per weight byte, which is compute-bound once
// m >= bytes_per_value * peak / (2 * bandwidth). Both ends are rounded to the GEMM tile's rows
// (down for the fit, up for the stream). When no m satisfies both, the stream bound wins (a chunk
// whose hidden spills the cache still saves the memory of the whole hidden) and the plan says so.
//
// The decisions are plain structs (BlockPlan) that a blockwise execution reads; the planner only
// computes them from the shapes and the machine's figures, which the caller measures.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tg {

// What the planner needs to know of the machine.
struct PlannerMachine {
  double peak_flops = 0;           // FLOP/s
  double bandwidth = 0;            // bytes/s
  int64_t fast_memory_bytes = 0;   // where a chunk's activations should stay
  std::string fast_memory = "L2";  // its name, for the printed plan ("L2 per core")
  int64_t tile_rows = 1;           // the GEMM tile's rows: chunks are a multiple of it
};

// One block's shape: d_model, n sequences of c tokens, and the bytes of one value.
struct BlockShape {
  int64_t d_model = 0, batch = 0, context = 0;
  int64_t bytes_per_value = 4;
  int64_t tokens() const { return batch * context; }
};

enum class BlockExecution { Unchunked, Chunked };

struct BlockPlan {
  int64_t block = 0;             // its index in the model
  double weight_bytes = 0;       // 12 * d^2 * bytes
  double activation_bytes = 0;   // 7 * n * c * d * bytes
  double context_threshold = 0;  // 12/(7n) * d: chunking pays for c above it
  bool activations_outweigh_weights = false;  // c > context_threshold
  int64_t chunk_fit = 0;     // the largest m whose m*4d hidden fits the fast memory, rounded down to the tile
  int64_t chunk_stream = 0;  // the smallest m keeping weight streaming compute-bound, rounded up to the tile
  BlockExecution execution = BlockExecution::Unchunked;
  int64_t chunk_tokens = 0;  // m, when chunked; 0 when unchunked
  bool chunk_fits = false;   // the chosen chunk's hidden fits the fast memory
  std::string reason;        // one line: why this execution
};

// 12/(7n) * d_model: the context length above which a block's activations outweigh its weights.
double context_threshold(int64_t d_model, int64_t batch);

// The plan of one block. Throws tg::Error naming the field when a shape or machine figure is not
// positive.
BlockPlan plan_block(const BlockShape& shape, const PlannerMachine& machine, int64_t block = 0);

// One plan per block of a model of `layers` identical blocks.
std::vector<BlockPlan> plan_blocks(int64_t layers, const BlockShape& shape, const PlannerMachine& machine);

// The printed plan: the machine's figures, then one line per run of blocks with the same plan
// ("blocks 0-5: ...").
std::string describe_plans(const std::vector<BlockPlan>& plans, const BlockShape& shape, const PlannerMachine& machine);

// The output layer and its loss: the lm_head's logits x (N, d) @ W (V, d)^T and the cross-entropy
// over them, run chunk by chunk over the N tokens (autograd/functions/linear_crossentropy.h) so
// that the (N, V) logits, and their gradient, are never held whole. Per chunk of m tokens the
// three GEMMs (logits, dx, dW) do 6*m*d*V FLOPs and stream the weight twice and dW once in and
// out, about 4*V*d*bytes: 1.5*m/bytes FLOPs per weight byte, compute-bound once
// m >= 2*bytes*peak/(3*bandwidth) (the stream bound). The budget: a chunk's logits no larger than
// the weight (m <= d), or than the fast memory when that is larger (a small vocabulary's chunk
// then stays in cache): at most one weight's worth more at the peak, the size of the dW the
// chunked path keeps anyway. The chunk is the budget's m, or the stream bound's when that is
// larger; chunking pays (and --chunked-loss auto turns it on) when one chunk would not hold all N.
struct OutputLayerShape {
  int64_t d_model = 0, vocab = 0, tokens = 0;  // tokens: N = batch * context
  int64_t bytes_per_value = 4;
};

struct OutputLayerPlan {
  double logits_bytes = 0;   // N * V * bytes: the unchunked logits (their gradient is as large again)
  double weight_bytes = 0;   // V * d * bytes
  double budget_bytes = 0;   // max(weight, fast memory): what a chunk's logits may take
  int64_t chunk_budget = 0;  // the largest m whose logits fit the budget, down to the tile (at least one tile)
  int64_t chunk_stream = 0;  // the smallest m keeping the weight streaming compute-bound, up to the tile
  int64_t chunk_tokens = 0;  // m: max(chunk_budget, chunk_stream)
  bool chunked = false;      // m < N: the logits outweigh the budget
  std::string reason;        // one line: why
};

// Throws tg::Error naming the field when a shape or machine figure is not positive (fast_memory_bytes
// may be 0, a machine that does not say: the weight alone is the budget).
OutputLayerPlan plan_output_layer(const OutputLayerShape& shape, const PlannerMachine& machine);

// One line: "output layer: logits ... vs weight ...; chunks of m tokens (budget ..., stream ...); why".
std::string describe_output_layer_plan(const OutputLayerPlan& plan, const OutputLayerShape& shape);

}  // namespace tg
