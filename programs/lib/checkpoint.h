// Training checkpoints: one safetensors file holding the model ("model.*"), the optimizer
// state ("optim.*"), and in its metadata the run configuration, the tokenizer and the training
// state (step, schedule length, best validation loss, random generator and loader positions).
// That is everything a resumed run needs to continue exactly where this one stopped, and a
// Python reader gets the weights with the `safetensors` package.
#pragma once
#include <cstdint>
#include <string>

#include "data/loader.h"
#include "nn/module.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"

namespace tg {

struct TrainState {
  int64_t step = 0;         // optimizer steps done
  int64_t total_steps = 0;  // the schedule's length (--steps, or fitted to --minutes)
  double best_val_loss = 0.0;
  int64_t best_step = -1;   // -1: no validation yet
  double elapsed_seconds = 0.0;
  LoaderPosition loader;
  Generator::State dropout_rng{};  // the default generator, which dropout draws from
};

// Writes atomically (temp file, fsync, rename): a crash leaves the previous checkpoint intact.
void save_checkpoint(const std::string& path, const NamedTensors& model_state, const NamedTensors& optimizer_state,
                     const TrainState& state, const std::string& config_json, const std::string& tokenizer_json);

struct Checkpoint {
  std::string path;
  SafetensorsData model;      // names without the "model." prefix, ready for load_state_dict
  SafetensorsData optimizer;  // names without the "optim." prefix
  TrainState state;
  std::string config_json, tokenizer_json;
};

// Throws tg::Error naming the file when it is missing, truncated, malformed, or a safetensors
// file that is not a tilegrad training checkpoint.
Checkpoint load_checkpoint(const std::string& path);

// Loads a checkpoint's weights into an f32 `model` at their full precision: a bf16/fp16 run stores
// the model in half precision and the exact weights as AdamW's f32 masters, which win where
// present (sampling and export should not see the half-precision rounding). `weight_decay` is the
// run's (--weight-decay), which the trainer grouped the parameters by.
void load_full_precision_weights(Module& model, const Checkpoint& ckpt, float weight_decay);

}  // namespace tg
