// A task: what differs between training a GPT on text and a CNN on images, behind the one
// training loop in trainer.cpp. The loop owns the schedule, gradient accumulation, loss scaling,
// clipping, the NaN stop, --minutes, progress, status lines, evaluation cadence, metrics.csv,
// plots, checkpoints, exact resume and signals; a task supplies the model, its batches and loss,
// its evaluation, what an example is and what it costs, the samples it prints, the lines that
// describe it, and what its checkpoints carry beyond the model and optimizer.
//
// A task is built in two phases: its constructor (make_task.h) reads and checks the data, before
// anything is written; build_model() runs once the run folder exists, and the loop then moves the
// model to the device and converts it to the run's dtype.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "programs/lib/checkpoint.h"
#include "programs/lib/run_config.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace tg {

// Named measurements, in the order they are printed: {"val_loss", 1.46}, {"val_accuracy", 0.91}.
using Metrics = std::vector<std::pair<std::string, double>>;

// What counts as one example, for the status line ("tok/s"), the throughput column of
// metrics.csv ("tokens_per_s") and MFU (FLOPs per example).
struct ExampleUnit {
  std::string short_name;  // "tok", "img"
  std::string column;      // "tokens_per_s", "images_per_s"
  std::string noun;        // "token", "image": the loss is in nats per one of these
};

// This rank's rows of a tensor holding the global batch (run_config.h: global_batch), rows
// [rank * batch, (rank + 1) * batch); the tensor itself in a single process.
inline Tensor rank_rows(const Tensor& global, const RunConfig& config) {
  if (config.world_size == 1) return global;
  return global.narrow(0, config.rank * config.batch, config.batch).contiguous();
}

class Task {
 public:
  virtual ~Task() = default;

  // "text", "image": recorded in checkpoints; --resume and ./generate check it.
  virtual std::string kind() const = 0;

  // Fills the settings that depend on the data, before the schedule's defaults are derived from
  // --steps (an image run turns --epochs into --steps). The task keeps its own copy of the
  // configuration, so it updates both.
  virtual void complete_config(RunConfig& config) { (void)config; }

  // The model, f32 on the CPU, initialised from the run's seed, and the training batches drawn
  // onto `device`. Called once, before model().
  virtual void build_model(Device device) = 0;
  virtual Module& model() = 0;
  // The model's architecture as JSON (the shape that checkpoints must match to be loaded).
  virtual std::string architecture() const = 0;
  // The fusion planner's blockwise MLP (run_plan.h: choose_blockwise) for the model's transformer
  // blocks: chunks of chunk_tokens tokens, or unfused with 0. Called after build_model and the
  // conversion, before the first step; a model without transformer blocks has nothing to apply.
  virtual void use_blockwise_mlp(int64_t chunk_tokens) { (void)chunk_tokens; }

  // The next training micro-batch's mean loss, a scalar with the graph to backpropagate; the loop
  // runs backward, unscaling, clipping and the update.
  virtual Tensor micro_batch_loss() = 0;
  // Evaluation on held-out data under NoGrad, in eval mode: "val_loss" first (the loop keeps the
  // best checkpoint by it), then the task's own metrics, named like metric_columns().
  virtual Metrics evaluate() = 0;
  // The task's metrics.csv columns beyond val_loss (e.g. val_accuracy, test_accuracy).
  virtual std::vector<std::string> metric_columns() const { return {}; }
  // A last evaluation when training ends (e.g. on a test split): printed and written as a
  // metrics.csv row. Empty: none.
  virtual Metrics final_evaluation() { return {}; }

  virtual ExampleUnit example_unit() const = 0;
  virtual double examples_per_micro_batch() const = 0;
  // Training FLOPs (forward + backward) per example, for MFU.
  virtual double flops_per_example() const = 0;

  // Prints what the model does at this step (generated text, predicted labels).
  virtual void print_sample(int64_t step) = 0;

  // The header's first line (the data), the model as the loop's model line shows it ("4 layers,
  // 4 heads, 128 wide, block 64"), and a micro-batch's shape ("12 x 64").
  virtual std::string describe_data() const = 0;
  virtual std::string describe_model() const = 0;
  virtual std::string describe_batch() const = 0;
  // The task's own execution decisions for the header, after the planner's (the text task's chunked
  // output layer), one line; empty: none.
  virtual std::string describe_plan() const { return ""; }
  // The summary's last line: how to use what was trained ("sample with: ./generate --ckpt DIR").
  virtual std::string next_step_hint(const std::string& out_dir) const = 0;

  // Files the task keeps in the run folder besides the loop's (the tokenizer), written before
  // the first step.
  virtual void write_run_files(const std::string& out_dir) const { (void)out_dir; }

  // What its checkpoints carry besides the model, the optimizer and the loop's state (kind and
  // architecture included), and restoring it on --resume, after the model has been loaded.
  virtual TaskCheckpoint checkpoint_extras() const = 0;
  virtual void restore(const Checkpoint& checkpoint) = 0;
};

}  // namespace tg
