#include "programs/lib/run_plan.h"

#include "tensor/dtype.h"

namespace tg {

bool run_has_transformer_blocks(const RunConfig& c) { return c.task == "text" && c.text.arch == "gpt"; }

std::string describe_run_plan(const RunConfig& c, const PlannerMachine& machine) {
  if (c.task == "image")
    return "plan: the planner decides for transformer blocks; the image task's CNN has none (its convolutions "
           "already run tile by tile through L2-sized packed panels, README: How a convolution runs)\n";
  if (!run_has_transformer_blocks(c))
    return "plan: the planner decides for transformer blocks; --arch " + c.text.arch + " has none\n";
  BlockShape shape;
  shape.d_model = c.text.embd;
  shape.batch = c.batch;
  shape.context = c.text.block;
  shape.bytes_per_value = static_cast<int64_t>(dtype_size(parse_dtype(c.dtype)));
  if (machine.fast_memory_bytes <= 0)
    return "plan: this machine does not say how large its " + machine.fast_memory +
           " is, so the planner cannot size a chunk\n";
  return describe_plans(plan_blocks(c.text.layers, shape, machine), shape, machine);
}

}  // namespace tg
