// Everything that defines a training run: the flags of ./train, the model presets, the defaults
// chosen for the machine, and the run's config.json.
//
// JSON keys are the flag names, so resuming can overlay a checkpoint's configuration with the
// flags the user gave again (see resolve_resume in trainer.cpp).
#pragma once
#include <cstdint>
#include <string>

#include "programs/lib/flags.h"
#include "tensor/device.h"

namespace tg {

struct RunConfig {
  std::string data;  // the corpus; empty means the default corpus
  std::string out;   // run folder; empty means runs/<corpus name>
  bool resume = false;

  // Model. 0 (or "" for model) means "from the preset / the machine".
  std::string model;
  int64_t layers = 0, heads = 0, embd = 0, block = 0;
  double dropout = 0.0;

  // Data.
  std::string tokenizer = "char";
  int64_t vocab_size = 0;  // bpe only; 0 means 512
  double val_fraction = 0.1;

  // Optimization.
  int64_t batch = 0, grad_accum = 1, steps = 0;
  double minutes = 0.0;  // a time budget instead of --steps when > 0
  double lr = 0.0, min_lr = -1.0, weight_decay = 0.1, clip = 1.0;
  int64_t warmup = -1;
  int64_t seed = 1337;

  // Reporting and saving.
  int64_t log_every = 10, eval_every = 0, eval_batches = 20, sample_every = 0, sample_tokens = 200, save_every = 0;

  // Machine.
  std::string device = "auto", dtype = "auto";  // dtype auto: bf16 on CUDA, fp32 on the CPU
  int64_t threads = 0;  // 0: every core OpenMP sees
  bool mem_stats = false;
  bool stochastic_rounding = false;  // bf16/fp16: round the f32 masters into the weights stochastically
};

// The device a --device value names ("cpu", "cuda", "cuda:N"; "auto" must be resolved first),
// checked against this machine. Throws naming --device when the value is malformed, the build has
// no CUDA, no GPU is visible or the index is past the last GPU.
Device device_from_flag(const std::string& value);

// Registers every ./train flag on `flags`, bound to `config`'s fields.
void add_train_flags(FlagSet& flags, RunConfig& config);

// Fills what the flags left open: the device (auto -> cuda when a GPU is visible), the preset's
// shape, and the defaults for that device; then checks what depends on several flags
// (--embd divisible by --heads, and so on). Throws tg::Error naming the flag.
void resolve_defaults(RunConfig& config, const FlagSet& flags);

// The preset's (layers, heads, embd, block); throws for an unknown name.
struct ModelShape { int64_t layers, heads, embd, block; };
ModelShape model_preset(const std::string& name);

std::string config_to_json(const RunConfig& config);  // pretty-printed, for config.json
RunConfig config_from_json(const std::string& text, const std::string& source);

// The default corpus, data/corpus/kjv.txt, and how to make it.
std::string default_corpus_path();

}  // namespace tg
