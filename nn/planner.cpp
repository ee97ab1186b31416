#include "nn/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tensor/error.h"

namespace tg {

namespace {

void check_positive(double value, const char* name) {
  if (!(value > 0)) throw Error(std::string("planner: ") + name + " must be positive, got " + std::to_string(value));
}

std::string megabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), bytes >= 1e9 ? "%.2f GB" : "%.2f MB", bytes >= 1e9 ? bytes / 1e9 : bytes / 1e6);
  return text;
}

bool same_decision(const BlockPlan& a, const BlockPlan& b) {
  return a.execution == b.execution && a.chunk_tokens == b.chunk_tokens && a.weight_bytes == b.weight_bytes &&
         a.activation_bytes == b.activation_bytes;
}

}  // namespace

double context_threshold(int64_t d_model, int64_t batch) {
  return 12.0 * static_cast<double>(d_model) / (7.0 * static_cast<double>(batch));
}

BlockPlan plan_block(const BlockShape& shape, const PlannerMachine& machine, int64_t block) {
  check_positive(static_cast<double>(shape.d_model), "d_model");
  check_positive(static_cast<double>(shape.batch), "batch");
  check_positive(static_cast<double>(shape.context), "context");
  check_positive(static_cast<double>(shape.bytes_per_value), "bytes_per_value");
  check_positive(machine.peak_flops, "peak_flops");
  check_positive(machine.bandwidth, "bandwidth");
  check_positive(static_cast<double>(machine.fast_memory_bytes), "fast_memory_bytes");
  check_positive(static_cast<double>(machine.tile_rows), "tile_rows");

  const double d = static_cast<double>(shape.d_model), bytes = static_cast<double>(shape.bytes_per_value);
  const int64_t tile = machine.tile_rows;
  BlockPlan plan;
  plan.block = block;
  plan.weight_bytes = 12.0 * d * d * bytes;
  plan.activation_bytes = 7.0 * static_cast<double>(shape.tokens()) * d * bytes;
  plan.context_threshold = context_threshold(shape.d_model, shape.batch);
  plan.activations_outweigh_weights = static_cast<double>(shape.context) > plan.context_threshold;

  // The largest m with m * 4d * bytes <= fast memory, down to the tile; the smallest m with
  // 2m / bytes >= peak / bandwidth, up to the tile.
  const int64_t fit = static_cast<int64_t>(static_cast<double>(machine.fast_memory_bytes) / (4.0 * d * bytes));
  const int64_t stream = static_cast<int64_t>(std::ceil(bytes * machine.peak_flops / (2.0 * machine.bandwidth)));
  plan.chunk_fit = fit / tile * tile;
  plan.chunk_stream = std::max<int64_t>((stream + tile - 1) / tile * tile, tile);

  if (!plan.activations_outweigh_weights) {
    plan.reason = "the weights outweigh the activations (c " + std::to_string(shape.context) + " <= " +
                  std::to_string(static_cast<int64_t>(std::floor(plan.context_threshold))) +
                  "): all tokens at once read each weight once";
    return plan;
  }
  const bool fits = plan.chunk_fit >= plan.chunk_stream;
  const int64_t m = fits ? plan.chunk_fit : plan.chunk_stream;
  if (m >= shape.tokens()) {
    plan.reason = "the activations outweigh the weights, but one chunk of " + std::to_string(m) +
                  " tokens would hold all " + std::to_string(shape.tokens()) + ": nothing to chunk";
    return plan;
  }
  plan.execution = BlockExecution::Chunked;
  plan.chunk_tokens = m;
  plan.chunk_fits = fits;
  plan.reason = fits ? "the activations outweigh the weights; a chunk's hidden (" + std::to_string(m) + " x 4d) fits " +
                           machine.fast_memory
                     : "the activations outweigh the weights; no chunk both fits " + machine.fast_memory +
                           " and streams the weights compute-bound, so the smallest that streams them (its hidden spills)";
  return plan;
}

std::vector<BlockPlan> plan_blocks(int64_t layers, const BlockShape& shape, const PlannerMachine& machine) {
  std::vector<BlockPlan> plans;
  for (int64_t block = 0; block < layers; block++) plans.push_back(plan_block(shape, machine, block));
  return plans;
}

std::string describe_plans(const std::vector<BlockPlan>& plans, const BlockShape& shape, const PlannerMachine& machine) {
  char line[512];
  std::snprintf(line, sizeof(line),
                "plan: d_model %lld, n %lld x c %lld tokens, %lld-byte values; %s %s, peak %.1f GFLOP/s, "
                "bandwidth %.1f GB/s, GEMM tile %lld rows\n",
                static_cast<long long>(shape.d_model), static_cast<long long>(shape.batch),
                static_cast<long long>(shape.context), static_cast<long long>(shape.bytes_per_value),
                machine.fast_memory.c_str(), megabytes(static_cast<double>(machine.fast_memory_bytes)).c_str(),
                machine.peak_flops / 1e9, machine.bandwidth / 1e9, static_cast<long long>(machine.tile_rows));
  std::string out = line;
  for (size_t i = 0; i < plans.size();) {
    size_t j = i;
    while (j + 1 < plans.size() && same_decision(plans[i], plans[j + 1])) j++;
    const BlockPlan& p = plans[i];
    std::string blocks = i == j ? "block " + std::to_string(p.block)
                                : "blocks " + std::to_string(p.block) + "-" + std::to_string(plans[j].block);
    std::string execution = p.execution == BlockExecution::Chunked
                                ? "chunks of " + std::to_string(p.chunk_tokens) + " tokens"
                                : std::string("unchunked");
    std::snprintf(line, sizeof(line),
                  "  %s: activations %s vs weights %s; c > 12/(7n) d = %.0f: %s -> %s (fit %lld, stream %lld); %s\n",
                  blocks.c_str(), megabytes(p.activation_bytes).c_str(), megabytes(p.weight_bytes).c_str(),
                  p.context_threshold, p.activations_outweigh_weights ? "yes" : "no", execution.c_str(),
                  static_cast<long long>(p.chunk_fit), static_cast<long long>(p.chunk_stream), p.reason.c_str());
    out += line;
    i = j + 1;
  }
  return out;
}

OutputLayerPlan plan_output_layer(const OutputLayerShape& shape, const PlannerMachine& machine) {
  check_positive(static_cast<double>(shape.d_model), "d_model");
  check_positive(static_cast<double>(shape.vocab), "vocab");
  check_positive(static_cast<double>(shape.tokens), "tokens");
  check_positive(static_cast<double>(shape.bytes_per_value), "bytes_per_value");
  check_positive(machine.peak_flops, "peak_flops");
  check_positive(machine.bandwidth, "bandwidth");
  if (machine.fast_memory_bytes < 0)  // 0: the machine does not say; the weight alone sets the budget
    throw Error("planner: fast_memory_bytes must not be negative, got " + std::to_string(machine.fast_memory_bytes));
  check_positive(static_cast<double>(machine.tile_rows), "tile_rows");

  const double bytes = static_cast<double>(shape.bytes_per_value), V = static_cast<double>(shape.vocab);
  const int64_t tile = machine.tile_rows;
  OutputLayerPlan plan;
  plan.logits_bytes = static_cast<double>(shape.tokens) * V * bytes;
  plan.weight_bytes = V * static_cast<double>(shape.d_model) * bytes;
  plan.budget_bytes = std::max(plan.weight_bytes, static_cast<double>(machine.fast_memory_bytes));
  const int64_t fit = static_cast<int64_t>(plan.budget_bytes / (V * bytes));
  const int64_t stream = static_cast<int64_t>(std::ceil(2.0 * bytes * machine.peak_flops / (3.0 * machine.bandwidth)));
  plan.chunk_budget = std::max<int64_t>(fit / tile * tile, tile);
  plan.chunk_stream = std::max<int64_t>((stream + tile - 1) / tile * tile, tile);
  plan.chunk_tokens = std::max(plan.chunk_budget, plan.chunk_stream);
  plan.chunked = plan.chunk_tokens < shape.tokens;
  if (!plan.chunked)
    plan.reason = "one chunk of " + std::to_string(plan.chunk_tokens) + " tokens would hold all " +
                  std::to_string(shape.tokens) + ": the logits fit the budget, nothing to chunk";
  else if (plan.chunk_budget >= plan.chunk_stream)
    plan.reason = "the logits outweigh the budget; a chunk's logits fit it and stream the weight compute-bound";
  else
    plan.reason = "the logits outweigh the budget; the smallest chunk that streams the weight compute-bound "
                  "(its logits exceed the budget)";
  return plan;
}

std::string describe_output_layer_plan(const OutputLayerPlan& p, const OutputLayerShape& shape) {
  const std::string execution = p.chunked ? "chunks of " + std::to_string(p.chunk_tokens) + " tokens" : "unchunked";
  char line[512];
  std::snprintf(line, sizeof(line),
                "output layer + loss: V %lld, %lld tokens; logits %s (and their gradient) vs weight %s, budget %s -> "
                "%s (budget %lld, stream %lld); %s\n",
                static_cast<long long>(shape.vocab), static_cast<long long>(shape.tokens),
                megabytes(p.logits_bytes).c_str(), megabytes(p.weight_bytes).c_str(), megabytes(p.budget_bytes).c_str(),
                execution.c_str(),
                static_cast<long long>(p.chunk_budget), static_cast<long long>(p.chunk_stream), p.reason.c_str());
  return line;
}

}  // namespace tg
