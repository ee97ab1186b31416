// Training checkpoints: one safetensors file holding the model ("model.*"), the optimizer state
// ("optim.*") and the task's tensors ("task.*"), and in its metadata the run configuration, the
// training state (step, schedule length, best validation loss, the dropout generator), the task's
// kind and model architecture, and the task's own entries (the text task's tokenizer and loader
// position). That is everything a resumed run needs to continue exactly where this one stopped,
// and a Python reader gets the weights with the `safetensors` package.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"

namespace tg {

// What the loop keeps across a restart; the task keeps its own (TaskCheckpoint).
struct TrainState {
  int64_t step = 0;         // optimizer steps done
  int64_t total_steps = 0;  // the schedule's length (--steps, or fitted to --minutes)
  double best_val_loss = 0.0;
  int64_t best_step = -1;   // -1: no validation yet
  double elapsed_seconds = 0.0;
  Generator::State dropout_rng{};  // the default generator, which dropout draws from (rank 0's)
  // With several ranks, every rank's default generator, by rank (each draws its own dropout
  // masks); empty for one process. Resuming at the same world size gives each rank its own back.
  std::vector<Generator::State> rank_dropout_rng;
};

// The task's part of a checkpoint (programs/lib/task.h). `kind` and `architecture` let --resume
// and ./generate refuse a checkpoint of another task or model with one line.
struct TaskCheckpoint {
  std::string kind;          // "text", "image"; checkpoints written before tasks existed read as "text"
  std::string architecture;  // the task's description of its model (JSON); "" when not recorded
  std::map<std::string, std::string> metadata;  // the task's entries, e.g. "tokenizer"
  NamedTensors tensors;                         // stored as "task.<name>"
};

// Writes atomically (temp file, fsync, rename): a crash leaves the previous checkpoint intact.
// Throws when the task's metadata uses a key the checkpoint itself writes ("config", "state", ...).
void save_checkpoint(const std::string& path, const NamedTensors& model_state, const NamedTensors& optimizer_state,
                     const TrainState& state, const std::string& config_json, const TaskCheckpoint& task);

struct Checkpoint {
  std::string path;
  SafetensorsData model;      // names without the "model." prefix, ready for load_state_dict
  SafetensorsData optimizer;  // names without the "optim." prefix
  TrainState state;
  std::string config_json;
  // The task's entries; `metadata` holds every metadata entry of the file, the checkpoint's own
  // included, so a task can read what older checkpoints kept elsewhere.
  TaskCheckpoint task;
};

// Throws tg::Error naming the file when it is missing, truncated, malformed, or a safetensors
// file that is not a tilegrad training checkpoint.
Checkpoint load_checkpoint(const std::string& path);

// "an image-classifier checkpoint", "a text-model checkpoint": how messages name a kind.
std::string describe_checkpoint_kind(const std::string& kind);

// Loads a checkpoint's weights into an f32 `model` at their full precision: a bf16/fp16 run stores
// the model in half precision and the exact weights as AdamW's f32 masters, which win where
// present (sampling and export should not see the half-precision rounding). `weight_decay` is the
// run's (--weight-decay), which the trainer grouped the parameters by.
void load_full_precision_weights(Module& model, const Checkpoint& ckpt, float weight_decay);

}  // namespace tg
