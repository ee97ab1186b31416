#include "nn/planner.h"

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

}  // namespace tg
