// The fusion planner (nn/planner.h) applied to a run: printed at the start of a GPT run and by
// ./train --plan.
#pragma once
#include <string>

#include "nn/planner.h"
#include "programs/lib/run_config.h"
#include "tensor/device.h"
#include "tensor/dtype.h"

namespace tg {

// True when the run's model has transformer blocks (the text task's GPT).
bool run_has_transformer_blocks(const RunConfig& config);

// The planner's decisions for every block of the run's model (d_model --embd, n --batch sequences
// of c --block tokens, the dtype's bytes per value), or, for a model without transformer blocks,
// one line saying that the planner has nothing to decide for it. A GPT's plan ends with the
// blockwise MLP's line (choose_blockwise).
std::string describe_run_plan(const RunConfig& config, const PlannerMachine& machine);

// The run's output layer and loss as the planner sees them: d --embd, V `vocab`, N --batch x --block
// tokens, the dtype's bytes per value.
OutputLayerShape run_output_layer_shape(const RunConfig& config, int64_t vocab);

// The machine a run's plans are made for, measured now: on the CPU the FMA probe of the status line
// and a copy of 64 MB buffers (a few tenths of a second), on a GPU measure_roofline's figures.
PlannerMachine measure_planner_machine(Device device, DType dtype, int threads);

// The tokens per chunk of the run's output layer and loss (GPT::set_loss_chunk) over a vocabulary
// of `vocab` ids: 0 (unchunked) with --chunked-loss off, for a model without transformer blocks, or
// with auto when the planner does not chunk; the planner's chunk otherwise. `description` gets
// one line saying what was decided and why. With auto, a budget that already holds every token
// decides without measuring the machine (the stream bound only ever makes a chunk larger).
int64_t run_loss_chunk(const RunConfig& config, int64_t vocab, Device device, std::string* description);
// --blockwise resolved for the run: the MLP's chunk in tokens of the micro-batch (0: unfused) and
// one line saying what was chosen and why. auto chunks when the planner does, with its chunk m;
// on takes m whatever the verdict (at most the micro-batch's tokens); a number is the chunk; off,
// and auto where the blockwise MLP cannot apply (--mlp swiglu, dropout), are 0.
struct BlockwiseChoice {
  int64_t chunk_tokens = 0;
  std::string line;
};
BlockwiseChoice choose_blockwise(const RunConfig& config, const PlannerMachine& machine);

}  // namespace tg
