#include "programs/lib/run_config.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "programs/lib/make_task.h"
#include "tensor/device.h"
#include "tensor/error.h"

namespace tg {

std::string default_corpus_path() { return "data/corpus/kjv.txt"; }

std::string canonical_or_same(const std::string& path) {
  std::error_code error;
  std::filesystem::path resolved = std::filesystem::weakly_canonical(path, error);
  return error ? path : resolved.string();
}

Device device_from_flag(const std::string& value) {
  Device device;
  try {
    device = parse_device(value);
  } catch (const Error& e) {
    throw Error(std::string("--device: ") + e.what());
  }
  if (device.is_cuda()) {
    if (!cuda_available()) throw Error("--device " + value + ": no CUDA GPU is available (" + cuda_status() + "); use --device cpu");
    if (device.index >= cuda_device_count())
      throw Error("--device " + value + ": this machine has " + std::to_string(cuda_device_count()) +
                  " GPU(s), numbered from 0");
  }
  return device;
}

void add_train_flags(FlagSet& flags, RunConfig& c) {
  // --model and --val-fraction mean the same thing for every task, over each task's own presets.
  flags.add_section("all tasks: model and data");
  flags.add_string("model", &c.model,
                   "preset. text: tiny 4/4/128/64, small 6/6/384/256, medium 8/8/512/512, gpt2 12/12/768/1024 "
                   "(layers/heads/width/block); images: " + image_model_help(),
                   {}, "text: tiny on CPU, small on GPU; images: cnn");
  flags.add_float("val-fraction", &c.val_fraction,
                  "fraction held out for validation (text: the corpus's tail; images: a stratified sample of the "
                  "training images, when the data has no val/ folder)", 0.0, 0.5, /*min_exclusive=*/true);

  flags.add_section("all tasks: optimization");
  flags.add_string("optimizer", &c.optimizer, "adamw, or sgd (with Nesterov momentum)", {"adamw", "sgd"},
                   "adamw for text, sgd for images");
  flags.add_int("batch", &c.batch, "examples (sequences, images) per micro-batch", 1, 1 << 20,
                "text: 12 on CPU, 64 on GPU; images: 128");
  flags.add_int("grad-accum", &c.grad_accum, "micro-batches per optimizer step", 1, 1 << 20);
  flags.add_int("steps", &c.steps, "optimizer steps", 1, int64_t{1} << 40, "text: 5000; images: from --epochs");
  flags.add_float("minutes", &c.minutes, "train for this long instead of --steps (the schedule is fitted to it)", 0.0,
                  1e6, true, "off");
  flags.add_float("lr", &c.lr, "peak learning rate", 0.0, 1e30, true, "text: 1e-3 (6e-4 for gpt2), 0.1 with sgd; images: 0.1 with sgd, 2e-3 with adamw");
  flags.add_int("warmup", &c.warmup, "linear warmup steps", 0, int64_t{1} << 40, "5% of the steps, at most 100");
  flags.add_float("min-lr", &c.min_lr, "learning rate at the end of the cosine decay", 0.0, 1e30, false, "text: lr / 10; images: 0");
  flags.add_float("weight-decay", &c.weight_decay,
                  "weight decay of matrices, kernels and embeddings (AdamW's decoupled, SGD's L2)", 0.0, 10.0, false,
                  "0.1 for adamw, 5e-4 for sgd");
  flags.add_float("momentum", &c.momentum, "SGD's Nesterov momentum (0: plain SGD; sgd only)", 0.0, 0.999);
  flags.add_float("clip", &c.clip, "clip the global gradient norm to this (0: no clipping)", 0.0, 1e6);
  flags.add_int("seed", &c.seed, "seed for initialisation, batches and dropout", 0, INT64_MAX);

  flags.add_section("all tasks: progress and output");
  flags.add_int("log-every", &c.log_every, "steps between status lines", 1, INT64_MAX);
  flags.add_int("eval-every", &c.eval_every, "steps between evaluations", 1, INT64_MAX, "text: steps / 10, at most 250; images: once an epoch");
  flags.add_int("eval-batches", &c.eval_batches, "text: batches per evaluation (images: the whole validation split)", 1, 1 << 20);
  flags.add_int("sample-every", &c.sample_every, "steps between printed samples", 1, INT64_MAX, "steps / 4");
  flags.add_int("save-every", &c.save_every, "steps between checkpoints (also at every eval and at the end)", 1,
                INT64_MAX, "eval-every");
  flags.add_string("out", &c.out, "run folder: config, metrics, plot, checkpoints and the task's files", {},
                   "runs/<data name>");
  flags.add_switch("resume", &c.resume, "continue the run in --out from its last checkpoint");

  flags.add_section("all tasks: machine");
  flags.add_string("device", &c.device, "cpu, cuda, cuda:N, or auto (cuda when a GPU is visible)");
  flags.add_string("dtype", &c.dtype,
                   "compute precision; bf16 and fp16 (with loss scaling) keep f32 master weights, adamw only; auto "
                   "is bf16 on CUDA with adamw, fp32 otherwise",
                   {"auto", "fp32", "bf16", "fp16"});
  flags.add_float("loss-scale", &c.loss_scale,
                  "fp16: the initial loss scale (halved and the step skipped when a gradient overflows, doubled "
                  "after 2000 clean steps)", 1.0, 1e38);
  flags.add_int("threads", &c.threads, "OpenMP threads", 1, 4096, "all cores");
  flags.add_switch("stochastic-rounding", &c.stochastic_rounding,
                   "bf16/fp16: write the f32 master weights into the model's weights with unbiased stochastic "
                   "rounding instead of to nearest");
  flags.add_switch("mem-stats", &c.mem_stats, "memory on every status line: the caching allocator's peak in use and reserved");
  flags.add_float("dist-timeout", &c.dist_timeout,
                  "under mpirun: seconds a collective may wait for the other ranks before the job ends with an "
                  "error (a rank died or hangs)", 1.0, 1e7);
  flags.add_int("zero", &c.zero,
                "under mpirun: 1 shards AdamW's moments and master weights across the ranks (ZeRO-1: gradients "
                "reduce-scattered, each rank updates its shard, parameters all-gathered); 0 keeps them whole",
                0, 1);
  flags.add_switch("sync-bn", &c.sync_bn,
                   "under mpirun, image task: BatchNorm normalises with the statistics of the whole global batch "
                   "(every rank's images) instead of each rank's own");

  flags.add_section("all tasks: measuring");
  flags.add_switch("profile", &c.profile,
                   "time every op of a few steps after warm-up against the measured roofline; print the table, "
                   "write profile.csv, profile.txt and roofline.png to the run folder, and exit (no checkpoint)");
  flags.add_int("profile-steps", &c.profile_steps, "steps --profile times (after 2 warm-up steps)", 1, 1000);
  flags.add_switch("plan", &c.plan,
                   "print the fusion planner's decisions for each transformer block (activations vs weights, "
                   "chunk size) and exit");

  // Each task's own flags, under headings of their own (make_task.h).
  add_task_flags(flags, c);
}

void resolve_defaults(RunConfig& c, const FlagSet& flags) {
  if (c.device == "auto") c.device = cuda_available() && task_runs_on_cuda(c.task) ? "cuda" : "cpu";
  Device device;
  try {
    device = parse_device(c.device);
  } catch (const Error& e) {
    throw Error(std::string("--device: ") + e.what());
  }
  bool gpu = device.is_cuda();
  resolve_task_defaults(c, flags, gpu);  // presets, optimizer, batch, steps, lr

  // SGD keeps no f32 master weights (optim/sgd.h), so it trains f32 parameters only.
  if (c.dtype == "auto") c.dtype = gpu && c.optimizer == "adamw" ? "bf16" : "fp32";
  if (c.optimizer == "sgd" && c.dtype != "fp32")
    throw Error("--dtype " + c.dtype + " needs f32 master weights, which --optimizer sgd does not keep; use --dtype "
                "fp32 or --optimizer adamw");
  if (c.optimizer != "sgd" && flags.given("momentum"))
    throw Error("--momentum applies to --optimizer sgd only (AdamW's betas are fixed at 0.9 and 0.95)");
  // ZeRO-1 shards AdamW's state; the loss scaler and stochastic rounding read what it shards.
  if (c.zero == 1 && c.optimizer != "adamw")
    throw Error("--zero 1 shards AdamW's state; --optimizer " + c.optimizer + " is not sharded (use --optimizer adamw)");
  if (c.zero == 1 && c.dtype == "fp16")
    throw Error("--zero 1 does not support --dtype fp16: the loss scaler checks the whole gradients, which ZeRO-1 "
                "shards (use --dtype bf16 or fp32)");
  if (c.zero == 1 && c.stochastic_rounding)
    throw Error("--zero 1 does not support --stochastic-rounding: its random bits follow an element's index in its "
                "tensor, which a shard does not keep");
  if (c.sync_bn && c.task != "image")
    throw Error("--sync-bn synchronises BatchNorm, which only the image task's models have (this run's task is " +
                c.task + ")");
  if (c.weight_decay < 0.0) c.weight_decay = c.optimizer == "sgd" ? 5e-4 : 0.1;
  if (c.min_lr < 0.0) c.min_lr = c.lr / 10.0;
  if (c.min_lr > c.lr)
    throw Error("--min-lr " + format_number(c.min_lr) + " is above --lr " + format_number(c.lr));
}

void resolve_schedule_defaults(RunConfig& c) {
  if (c.warmup < 0) c.warmup = std::min<int64_t>(100, c.steps / 20);
  if (c.eval_every == 0) c.eval_every = std::max<int64_t>(1, std::min<int64_t>(250, c.steps / 10));
  if (c.sample_every == 0) c.sample_every = std::max<int64_t>(1, c.steps / 4);
  if (c.save_every == 0) c.save_every = c.eval_every;
}

std::string config_to_json(const RunConfig& c) {
  nlohmann::ordered_json j;
  j["data"] = c.data;
  j["out"] = c.out;
  j["task"] = c.task;
  j["model"] = c.model;
  if (c.task == "text") text_options_to_json(c.text, j);
  if (c.task == "image") image_options_to_json(c.image, j);
  j["val-fraction"] = c.val_fraction;
  j["optimizer"] = c.optimizer;
  j["batch"] = c.batch;
  j["grad-accum"] = c.grad_accum;
  j["steps"] = c.steps;
  j["minutes"] = c.minutes;
  j["lr"] = c.lr;
  j["warmup"] = c.warmup;
  j["min-lr"] = c.min_lr;
  j["weight-decay"] = c.weight_decay;
  j["momentum"] = c.momentum;
  j["clip"] = c.clip;
  j["seed"] = c.seed;
  j["log-every"] = c.log_every;
  j["eval-every"] = c.eval_every;
  j["eval-batches"] = c.eval_batches;
  j["sample-every"] = c.sample_every;
  j["save-every"] = c.save_every;
  j["device"] = c.device;
  j["dtype"] = c.dtype;
  j["threads"] = c.threads;
  j["mem-stats"] = c.mem_stats;
  j["stochastic-rounding"] = c.stochastic_rounding;
  j["loss-scale"] = c.loss_scale;
  j["dist-timeout"] = c.dist_timeout;
  j["zero"] = c.zero;
  j["sync-bn"] = c.sync_bn;
  j["world-size"] = c.world_size;
  return j.dump(2);
}

RunConfig config_from_json(const std::string& text, const std::string& source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error("run configuration in '" + source + "' is not a JSON object");
  RunConfig c;
  try {
    c.data = j.at("data").get<std::string>();
    c.out = j.at("out").get<std::string>();
    // Absent from configurations written before the task, optimizer and momentum keys existed.
    c.task = j.value("task", std::string("text"));
    c.model = j.at("model").get<std::string>();
    if (c.task == "text") c.text = text_options_from_json(j);
    if (c.task == "image") c.image = image_options_from_json(j);
    c.val_fraction = j.at("val-fraction").get<double>();
    c.optimizer = j.value("optimizer", std::string("adamw"));
    c.batch = j.at("batch").get<int64_t>();
    c.grad_accum = j.at("grad-accum").get<int64_t>();
    c.steps = j.at("steps").get<int64_t>();
    c.minutes = j.at("minutes").get<double>();
    c.lr = j.at("lr").get<double>();
    c.warmup = j.at("warmup").get<int64_t>();
    c.min_lr = j.at("min-lr").get<double>();
    c.weight_decay = j.at("weight-decay").get<double>();
    c.momentum = j.value("momentum", 0.9);
    c.clip = j.at("clip").get<double>();
    c.seed = j.at("seed").get<int64_t>();
    c.log_every = j.at("log-every").get<int64_t>();
    c.eval_every = j.at("eval-every").get<int64_t>();
    c.eval_batches = j.at("eval-batches").get<int64_t>();
    c.sample_every = j.at("sample-every").get<int64_t>();
    c.save_every = j.at("save-every").get<int64_t>();
    c.device = j.at("device").get<std::string>();
    c.dtype = j.at("dtype").get<std::string>();
    c.threads = j.at("threads").get<int64_t>();
    c.mem_stats = j.value("mem-stats", false);  // absent from configs written before they existed
    c.stochastic_rounding = j.value("stochastic-rounding", false);
    c.loss_scale = j.value("loss-scale", 65536.0);  // absent before the flag existed: the scaler's default
    c.dist_timeout = j.value("dist-timeout", 300.0);  // absent before data parallel existed: one process
    c.world_size = j.value("world-size", 1);
    c.zero = j.value("zero", int64_t{0});  // absent before ZeRO-1 existed
    c.sync_bn = j.value("sync-bn", false);  // absent before --sync-bn existed
  } catch (const nlohmann::json::exception& e) {
    throw Error("run configuration in '" + source + "' is incomplete or mistyped: " + e.what());
  }
  return c;
}

}  // namespace tg
