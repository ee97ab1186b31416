#include "programs/lib/run_plan.h"

#include <omp.h>

#include <algorithm>

#include "programs/lib/machine_peak.h"
#include "programs/lib/roofline_probe.h"
#include "tensor/dtype.h"

namespace tg {

bool run_has_transformer_blocks(const RunConfig& c) { return c.task == "text" && c.text.arch == "gpt"; }

namespace {

// A block of the run's GPT: d_model --embd, n --batch sequences of c --block tokens, the dtype's
// bytes per value.
BlockShape run_block_shape(const RunConfig& c) {
  BlockShape shape;
  shape.d_model = c.text.embd;
  shape.batch = c.batch;
  shape.context = c.text.block;
  shape.bytes_per_value = static_cast<int64_t>(dtype_size(parse_dtype(c.dtype)));
  return shape;
}

}  // namespace

std::string describe_run_plan(const RunConfig& c, const PlannerMachine& machine) {
  if (c.task == "image")
    return "plan: the planner decides for transformer blocks; the image task's CNN has none (its convolutions "
           "already run tile by tile through L2-sized packed panels, README: How a convolution runs)\n";
  if (!run_has_transformer_blocks(c))
    return "plan: the planner decides for transformer blocks; --arch " + c.text.arch + " has none\n";
  const std::string blockwise = choose_blockwise(c, machine).line + "\n";
  if (machine.fast_memory_bytes <= 0)
    return "plan: this machine does not say how large its " + machine.fast_memory +
           " is, so the planner cannot size a chunk\n" + blockwise;
  BlockShape shape = run_block_shape(c);
  std::string plans = describe_plans(plan_blocks(c.text.layers, shape, machine), shape, machine) + blockwise;
  if (c.text.tokenizer != "bpe")
    return plans + "output layer + loss: the char vocabulary is the corpus's, so --chunked-loss " + c.text.chunked_loss +
           " is decided at the run's start (its model line)\n";
  OutputLayerShape output = run_output_layer_shape(c, c.text.vocab_size);
  return plans + describe_output_layer_plan(plan_output_layer(output, machine), output) +
         "  --chunked-loss " + c.text.chunked_loss + ": " +
         (c.text.chunked_loss == "auto" ? "follows the planner" : c.text.chunked_loss == "on" ? "chunked" : "unchunked") +
         "\n";
}

OutputLayerShape run_output_layer_shape(const RunConfig& c, int64_t vocab) {
  OutputLayerShape shape;
  shape.d_model = c.text.embd;
  shape.vocab = vocab;
  shape.tokens = c.batch * c.text.block;
  shape.bytes_per_value = static_cast<int64_t>(dtype_size(parse_dtype(c.dtype)));
  return shape;
}

PlannerMachine measure_planner_machine(Device device, DType dtype, int threads) {
  Roofline roof;
  if (device.is_cpu()) {
    roof.peak_flops = cpu_peak_gflops(threads) * 1e9;
    roof.bandwidth = cpu_copy_bandwidth_gbs(threads, size_t(64) << 20) * 1e9;
  } else {
    roof = measure_roofline(device, dtype, threads);
  }
  return planner_machine(device, roof);
}

int64_t run_loss_chunk(const RunConfig& c, int64_t vocab, Device device, std::string* description) {
  const std::string& mode = c.text.chunked_loss;
  std::string line;
  int64_t chunk = 0;
  if (!run_has_transformer_blocks(c)) {
    line = "";
  } else if (mode == "off") {
    line = "output layer + loss: unchunked (--chunked-loss off)";
  } else {
    const OutputLayerShape shape = run_output_layer_shape(c, vocab);
    // With auto, the plan with the stream bound at its least (one tile) first: if even that chunk
    // holds every token, the measured plan's would too.
    PlannerMachine least = planner_machine(device, Roofline());
    least.peak_flops = least.bandwidth = 1.0;
    const bool may_chunk = mode == "on" || plan_output_layer(shape, least).chunked;
    const OutputLayerPlan plan = may_chunk
        ? plan_output_layer(shape, measure_planner_machine(device, parse_dtype(c.dtype), omp_get_max_threads()))
        : plan_output_layer(shape, least);
    if (mode == "on" || plan.chunked) {
      chunk = plan.chunk_tokens;
      line = "output layer + loss: chunks of " + std::to_string(chunk) + " tokens of " +
             std::to_string(shape.tokens) + " (--chunked-loss " + mode + "; " + plan.reason + ")";
    } else {
      line = "output layer + loss: unchunked (--chunked-loss auto; " + plan.reason + ")";
    }
  }
  if (description) *description = line;
  return chunk;
}

BlockwiseChoice choose_blockwise(const RunConfig& c, const PlannerMachine& machine) {
  const TextOptions& o = c.text;
  BlockwiseChoice choice;
  const std::string head = "blockwise MLP (--blockwise " + o.blockwise + "): ";
  auto chunks = [&](int64_t m, const std::string& why) {
    choice.chunk_tokens = m;
    choice.line = head + "on, chunks of m = " + std::to_string(m) + " tokens (" + why + ")";
    return choice;
  };
  auto unfused = [&](const std::string& why) {
    choice.line = head + "off, unfused (" + why + ")";
    return choice;
  };
  if (!run_has_transformer_blocks(c)) return unfused("no transformer blocks");
  // text_options.cpp refused on and a chunk where these hold; auto steps aside.
  if (o.mlp != "gelu") return unfused("--mlp " + o.mlp + " has no blockwise path");
  if (o.dropout > 0) return unfused("the blockwise MLP has no dropout");
  if (o.blockwise == "off") return unfused("as asked");
  const int64_t tokens = c.batch * o.block;
  if (const int64_t m = blockwise_chunk_flag(o.blockwise)) return chunks(m, "as asked");
  if (machine.fast_memory_bytes <= 0) {
    if (o.blockwise == "auto") return unfused("the planner cannot size a chunk on this machine");
    return chunks(tokens, "one chunk of the micro-batch: the planner cannot size one on this machine");
  }
  const BlockPlan plan = plan_block(run_block_shape(c), machine);
  if (plan.execution == BlockExecution::Chunked) return chunks(plan.chunk_tokens, "the planner's chunk");
  if (o.blockwise == "auto") return unfused("the planner does not chunk: " + plan.reason);
  // on: the chunk the planner would take were the activations heavier, the micro-batch at most.
  const int64_t m = std::min(plan.chunk_fit >= plan.chunk_stream ? plan.chunk_fit : plan.chunk_stream, tokens);
  return chunks(m, "the planner's chunk, though it would not chunk");
}

}  // namespace tg
