// The fusion planner (nn/planner.h): the activation/weight inequality at its boundary, the
// founding post's LLaMA-7B figures, the chunk-size rule, and its errors. Each expectation is
// derived here from the quantities themselves (weights 12 d^2, activations 7 n c d, a chunk's
// hidden m 4 d values), by counting, not by the planner's closed forms.
#include <gtest/gtest.h>

#include "nn/planner.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

// The smallest context c at which 7 n c d activations outweigh 12 d^2 weights, found by counting.
int64_t first_context_where_activations_outweigh(int64_t d, int64_t n) {
  int64_t c = 1;
  while (7 * n * c * d <= 12 * d * d) c++;
  return c;
}

PlannerMachine machine(double peak, double bandwidth, int64_t fast, int64_t tile) {
  PlannerMachine m;
  m.peak_flops = peak;
  m.bandwidth = bandwidth;
  m.fast_memory_bytes = fast;
  m.fast_memory = "L2 per core";
  m.tile_rows = tile;
  return m;
}

BlockShape shape(int64_t d, int64_t n, int64_t c, int64_t bytes = 4) {
  BlockShape s;
  s.d_model = d;
  s.batch = n;
  s.context = c;
  s.bytes_per_value = bytes;
  return s;
}

}  // namespace

TEST(Planner, ReproducesTheFoundingPostsLlama7bFigures) {
  // LLaMA-7B, d_model 4096: "c > ~7,000 at n = 1 and c > ~900 at n = 8".
  const int64_t at_1 = first_context_where_activations_outweigh(4096, 1);
  const int64_t at_8 = first_context_where_activations_outweigh(4096, 8);
  EXPECT_EQ(at_1, 7022);  // 12 * 4096 / 7 = 7021.7
  EXPECT_EQ(at_8, 878);   // 12 * 4096 / 56 = 877.7
  EXPECT_NEAR(at_1, 7000, 0.05 * 7000);
  EXPECT_NEAR(at_8, 900, 0.05 * 900);
  EXPECT_NEAR(context_threshold(4096, 1), 12.0 * 4096 / 7, 1e-9);
  EXPECT_NEAR(context_threshold(4096, 8), 12.0 * 4096 / 56, 1e-9);
}

TEST(Planner, TheVerdictFlipsExactlyAtTheBoundary) {
  const PlannerMachine m = machine(455e9, 75e9, 1 << 20, 14);
  for (int64_t d : {768, 4096})
    for (int64_t n : {1, 8}) {
      const int64_t first = first_context_where_activations_outweigh(d, n);
      BlockPlan below = plan_block(shape(d, n, first - 1), m);
      BlockPlan at = plan_block(shape(d, n, first), m);
      EXPECT_FALSE(below.activations_outweigh_weights) << "d " << d << " n " << n << " c " << first - 1;
      EXPECT_TRUE(at.activations_outweigh_weights) << "d " << d << " n " << n << " c " << first;
      EXPECT_EQ(below.execution, BlockExecution::Unchunked);
      EXPECT_EQ(below.chunk_tokens, 0);
      // The byte counts behind the verdict.
      EXPECT_DOUBLE_EQ(at.weight_bytes, 12.0 * d * d * 4);
      EXPECT_DOUBLE_EQ(at.activation_bytes, 7.0 * n * first * d * 4);
    }
}

TEST(Planner, ChunksAreTheLargestTileMultipleWhoseHiddenFitsTheFastMemory) {
  // A 2-core Zen 5 as measured: 455 GFLOP/s, 75 GB/s, 1 MiB L2 per core, the 14-row GEMM tile.
  const PlannerMachine m = machine(455e9, 75e9, 1 << 20, 14);
  const int64_t d = 384, bytes = 4;
  // Largest multiple of 14 whose m x 4d hidden fits 1 MiB, by counting.
  int64_t fit = 0;
  for (int64_t m_try = 14; m_try * 4 * d * bytes <= (1 << 20); m_try += 14) fit = m_try;
  // Smallest multiple of 14 at which a chunk's (m,d)x(d,4d) product is compute-bound on the
  // streamed weights: 2 m 4d^2 FLOPs over 4d^2 * bytes weight bytes >= peak / bandwidth.
  int64_t stream = 14;
  while (2.0 * stream * 4 * d * d / (4.0 * d * d * bytes) < 455e9 / 75e9) stream += 14;
  EXPECT_EQ(fit, 168);
  EXPECT_EQ(stream, 14);

  BlockPlan plan = plan_block(shape(d, 64, 256), m, 3);  // c 256 > 12 * 384 / 448 ≈ 10
  EXPECT_EQ(plan.block, 3);
  EXPECT_TRUE(plan.activations_outweigh_weights);
  EXPECT_EQ(plan.chunk_fit, fit);
  EXPECT_EQ(plan.chunk_stream, stream);
  EXPECT_EQ(plan.execution, BlockExecution::Chunked);
  EXPECT_EQ(plan.chunk_tokens, fit);
  EXPECT_TRUE(plan.chunk_fits);
  EXPECT_EQ(plan.chunk_tokens % m.tile_rows, 0);
}

TEST(Planner, WhenNoChunkBothFitsAndStreamsTheStreamBoundWins) {
  // 64 KiB of fast memory holds the bf16 hidden of 21 tokens at d 384 (14 on the tile); streaming
  // needs 42 (bf16 at a
  // ridge of 40 FLOP/byte: m >= 2 * 40 / 2 = 40, up to the tile of 14: 42).
  const PlannerMachine m = machine(400e9, 10e9, 64 << 10, 14);
  BlockPlan plan = plan_block(shape(384, 8, 1024, 2), m);
  EXPECT_EQ(plan.chunk_fit, 14);  // floor(65536 / (4 * 384 * 2)) = 21, down to the tile
  EXPECT_EQ(plan.chunk_stream, 42);
  EXPECT_EQ(plan.execution, BlockExecution::Chunked);
  EXPECT_EQ(plan.chunk_tokens, 42);
  EXPECT_FALSE(plan.chunk_fits);
  EXPECT_NE(plan.reason.find("spills"), std::string::npos) << plan.reason;
}

TEST(Planner, OneChunkHoldingEveryTokenIsNoChunking) {
  const PlannerMachine m = machine(455e9, 75e9, 1 << 20, 14);
  // d 64: activations outweigh weights from c = 110 at n = 1; a chunk could hold 1022 tokens.
  BlockPlan plan = plan_block(shape(64, 1, 200), m);
  EXPECT_TRUE(plan.activations_outweigh_weights);
  EXPECT_EQ(plan.execution, BlockExecution::Unchunked);
  EXPECT_NE(plan.reason.find("nothing to chunk"), std::string::npos) << plan.reason;
}

TEST(Planner, DescribesRunsOfEqualBlocksOnceAndNamesBadInput) {
  const PlannerMachine m = machine(455e9, 75e9, 1 << 20, 14);
  std::vector<BlockPlan> plans = plan_blocks(6, shape(384, 64, 256), m);
  ASSERT_EQ(plans.size(), 6u);
  EXPECT_EQ(plans[5].block, 5);
  std::string text = describe_plans(plans, shape(384, 64, 256), m);
  EXPECT_NE(text.find("blocks 0-5: "), std::string::npos) << text;
  EXPECT_NE(text.find("chunks of 168 tokens"), std::string::npos) << text;
  EXPECT_THROW_WITH(plan_block(shape(0, 1, 1), m), "planner: d_model must be positive");
  EXPECT_THROW_WITH(plan_block(shape(64, 1, 1), machine(1e9, 1e9, 0, 14)), "fast_memory_bytes must be positive");
}

// ---- the output layer and its loss (plan_output_layer) ---------------------------------------

namespace {

OutputLayerShape output_shape(int64_t d, int64_t vocab, int64_t tokens, int64_t bytes = 4) {
  OutputLayerShape s;
  s.d_model = d;
  s.vocab = vocab;
  s.tokens = tokens;
  s.bytes_per_value = bytes;
  return s;
}

}  // namespace

// The target: small (d 384) with an 8192-id BPE vocabulary, batch 32 x block 256. The
// weight (8192 x 384 x 4 = 12.6 MB) outweighs a 1 MB L2, so the budget is the weight: m <= d =
// 384, down to the tile of 14: 378. The stream bound: 2 * 4 * 455e9 / (3 * 75e9) = 16.2 -> 17,
// up to the tile: 28. 378 of 8192 tokens: chunked.
TEST(PlannerOutputLayer, TheBudgetIsTheWeightOrTheFastMemory) {
  const OutputLayerPlan p = plan_output_layer(output_shape(384, 8192, 32 * 256), machine(455e9, 75e9, 1 << 20, 14));
  EXPECT_DOUBLE_EQ(p.logits_bytes, 8192.0 * 8192 * 4);
  EXPECT_DOUBLE_EQ(p.weight_bytes, 8192.0 * 384 * 4);
  EXPECT_DOUBLE_EQ(p.budget_bytes, p.weight_bytes);
  EXPECT_EQ(p.chunk_budget, 378);
  EXPECT_EQ(p.chunk_stream, 28);
  EXPECT_EQ(p.chunk_tokens, 378);
  EXPECT_TRUE(p.chunked);
  EXPECT_LE(static_cast<double>(p.chunk_tokens) * 8192 * 4, p.budget_bytes);  // the chunk's logits fit
  EXPECT_GT(static_cast<double>(p.chunk_tokens + 14) * 8192 * 4, p.budget_bytes);  // one tile more would not

  // A weight smaller than the fast memory: the fast memory is the budget, 4 MB / (1000 * 4) =
  // 1048 rows, down to 1036.
  const OutputLayerPlan q = plan_output_layer(output_shape(64, 1000, 4096), machine(455e9, 75e9, 4 << 20, 14));
  EXPECT_DOUBLE_EQ(q.budget_bytes, 4 << 20);
  EXPECT_EQ(q.chunk_tokens, 1036);
  EXPECT_TRUE(q.chunked);
}

// A char vocabulary of 65 ids at the tiny preset (12 x 64 tokens): the logits (200 KB) fit a
// 1 MB budget, one chunk would hold them all, so nothing is chunked.
TEST(PlannerOutputLayer, LogitsWithinTheBudgetAreNotChunked) {
  const OutputLayerPlan p = plan_output_layer(output_shape(128, 65, 12 * 64), machine(455e9, 75e9, 1 << 20, 14));
  EXPECT_FALSE(p.chunked);
  EXPECT_GE(p.chunk_tokens, 12 * 64);
  EXPECT_NE(p.reason.find("nothing to chunk"), std::string::npos) << p.reason;
  // An unknown fast memory (0) leaves the weight as the budget: 65 x 128 x 4 bytes, m <= 128.
  const OutputLayerPlan q = plan_output_layer(output_shape(128, 65, 12 * 64), machine(455e9, 75e9, 0, 1));
  EXPECT_EQ(q.chunk_budget, 128);
  EXPECT_TRUE(q.chunked);
}

// A machine whose weight streaming needs more rows than the budget holds: the stream bound wins.
// 2 * 4 * 400e9 / (3 * 1e9) = 1066.7 -> 1067, up to the tile of 8: 1072 > the budget's 384.
TEST(PlannerOutputLayer, TheStreamBoundWinsOverASmallBudget) {
  const OutputLayerPlan p = plan_output_layer(output_shape(384, 8192, 8192), machine(400e9, 1e9, 1 << 20, 8));
  EXPECT_EQ(p.chunk_budget, 384);
  EXPECT_EQ(p.chunk_stream, 1072);
  EXPECT_EQ(p.chunk_tokens, 1072);
  EXPECT_TRUE(p.chunked);
  EXPECT_NE(p.reason.find("exceed the budget"), std::string::npos) << p.reason;
  std::string line = describe_output_layer_plan(p, output_shape(384, 8192, 8192));
  EXPECT_NE(line.find("chunks of 1072 tokens"), std::string::npos) << line;
  EXPECT_NE(line.find("logits 268.44 MB"), std::string::npos) << line;
}

TEST(PlannerOutputLayer, BadInputIsNamed) {
  const PlannerMachine m = machine(455e9, 75e9, 1 << 20, 14);
  EXPECT_THROW_WITH(plan_output_layer(output_shape(384, 0, 10), m), "planner: vocab must be positive");
  EXPECT_THROW_WITH(plan_output_layer(output_shape(384, 10, 0), m), "planner: tokens must be positive");
  EXPECT_THROW_WITH(plan_output_layer(output_shape(384, 10, 10), machine(455e9, 75e9, -1, 14)),
                    "planner: fast_memory_bytes must not be negative");
}
