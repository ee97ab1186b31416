// Everything that defines a training run: the flags of ./train, the defaults chosen for the task
// and the machine, and the run's config.json.
//
// The loop's settings (optimization, progress, output, machine) apply to every task; each task's
// own settings live in its options struct (text_options.h), a member here. JSON keys are the flag
// names, in one flat object, so resuming can overlay a checkpoint's configuration with the flags
// the user gave again (run_setup.cpp).
#pragma once
#include <cstdint>
#include <string>

#include "programs/lib/flags.h"
#include "programs/lib/image_options.h"
#include "programs/lib/text_options.h"
#include "tensor/device.h"

namespace tg {

struct RunConfig {
  std::string data;  // the corpus file or image folder; empty means the default corpus
  std::string out;   // run folder; empty means runs/<data name>
  bool resume = false;
  std::string task;  // "text" or "image", decided from the data (make_task.h); not a flag

  // What every task has: a model preset ("" means the task's default) and a validation split.
  std::string model;
  double val_fraction = 0.1;

  // Optimization. 0 (or "" for optimizer, -1 for weight decay) means "the task's default".
  std::string optimizer;  // adamw or sgd
  int64_t batch = 0, grad_accum = 1, steps = 0;
  double minutes = 0.0;  // a time budget instead of --steps when > 0
  double lr = 0.0, min_lr = -1.0, weight_decay = -1.0, momentum = 0.9, clip = 1.0;
  int64_t warmup = -1;
  int64_t seed = 1337;

  // Reporting and saving.
  int64_t log_every = 10, eval_every = 0, eval_batches = 20, sample_every = 0, save_every = 0;

  // Machine.
  std::string device = "auto", dtype = "auto";  // dtype auto: bf16 on CUDA, fp32 on the CPU
  int64_t threads = 0;  // 0: every core OpenMP sees
  bool mem_stats = false;
  bool stochastic_rounding = false;  // bf16/fp16: round the f32 masters into the weights stochastically
  double loss_scale = 65536.0;       // fp16: GradScaler's initial scale (2^16, PyTorch's)

  // Measuring instead of training; actions of one invocation, not kept in config.json.
  bool profile = false;       // --profile: time the ops of profile_steps steps, write the report, exit
  int64_t profile_steps = 3;
  bool plan = false;          // --plan: print the planner's decisions and exit
  // Several processes (dist/launch.h). rank and world_size are not flags: the launcher's
  // environment sets them (mpirun, or RANK/WORLD_SIZE); config.json records the world size.
  int rank = 0, world_size = 1;
  double dist_timeout = 300;  // seconds a collective may take before the job is ended
  int64_t zero = 0;           // --zero 1: AdamW's state sharded across the ranks (dist/zero_adamw.h)
  bool sync_bn = false;       // --sync-bn: BatchNorm statistics over every rank's rows (dist/sync_batchnorm.h)
  // The examples of one optimizer micro-step over every rank: --batch per rank times the ranks.
  // Each rank's loader draws this global batch, exactly what one process at --batch N*B draws,
  // and keeps its own B rows (rank_rows in task.h).
  int64_t global_batch() const { return batch * world_size; }

  // The tasks' own settings.
  TextOptions text;
  ImageOptions image;
};

// The device a --device value names ("cpu", "cuda", "cuda:N"; "auto" must be resolved first),
// checked against this machine. Throws naming --device when the value is malformed, the build has
// no CUDA, no GPU is visible or the index is past the last GPU.
Device device_from_flag(const std::string& value);

// Registers every ./train flag on `flags`, bound to `config`'s fields: first the ones every task
// takes, then each task's own section.
void add_train_flags(FlagSet& flags, RunConfig& config);

// Fills what the flags left open, once config.task is set: the device (auto -> cuda when a GPU is
// visible), the task's defaults for that device (make_task.h), then the loop's; then checks what
// depends on several flags. Throws tg::Error naming the flag.
void resolve_defaults(RunConfig& config, const FlagSet& flags);
// Then, once the task has read its data and set what depends on it (Task::complete_config: an
// image run's --epochs become --steps), the schedule's defaults: warmup, and how often to
// evaluate, print samples and save.
void resolve_schedule_defaults(RunConfig& config);

std::string config_to_json(const RunConfig& config);  // pretty-printed, for config.json
// Configurations written before the task and optimizer keys existed read as text and AdamW.
RunConfig config_from_json(const std::string& text, const std::string& source);

// The path with symbolic links and dots resolved, as config.json records the data; the path
// itself when it cannot be resolved.
std::string canonical_or_same(const std::string& path);

// The default corpus, data/corpus/kjv.txt, and how to make it.
std::string default_corpus_path();

}  // namespace tg
