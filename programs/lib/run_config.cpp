#include "programs/lib/run_config.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "tensor/device.h"
#include "tensor/error.h"

namespace tg {

std::string default_corpus_path() { return "data/corpus/kjv.txt"; }

ModelShape model_preset(const std::string& name) {
  // tiny learns the KJV visibly in minutes on 2 cores; small is nanoGPT's shakespeare_char model;
  // gpt2 is GPT-2 small's shape (124M parameters with GPT-2's 50257-token vocabulary).
  if (name == "tiny") return {4, 4, 128, 64};
  if (name == "small") return {6, 6, 384, 256};
  if (name == "medium") return {8, 8, 512, 512};
  if (name == "gpt2") return {12, 12, 768, 1024};
  throw Error("--model '" + name + "' is not one of tiny|small|medium|gpt2");
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
  flags.add_section("model");
  flags.add_string("model", &c.model,
                   "preset as layers/heads/width/block: tiny 4/4/128/64, small 6/6/384/256, "
                   "medium 8/8/512/512, gpt2 12/12/768/1024",
                   {"tiny", "small", "medium", "gpt2"}, "tiny on CPU, small on GPU");
  flags.add_int("layers", &c.layers, "transformer blocks", 1, 256, "from --model");
  flags.add_int("heads", &c.heads, "attention heads (must divide --embd)", 1, 256, "from --model");
  flags.add_int("embd", &c.embd, "embedding width", 1, 16384, "from --model");
  flags.add_int("block", &c.block, "context length in tokens", 1, 65536, "from --model");
  flags.add_float("dropout", &c.dropout, "dropout probability", 0.0, 0.95);

  flags.add_section("data");
  flags.add_string("tokenizer", &c.tokenizer, "char (one id per character) or bpe (byte-level BPE trained on the file)",
                   {"char", "bpe"});
  flags.add_int("vocab-size", &c.vocab_size, "BPE vocabulary size, 256 bytes + merges (bpe only)", 257, 65536, "512");
  flags.add_float("val-fraction", &c.val_fraction, "fraction of the corpus held out for validation (its tail)", 0.0,
                  0.5, /*min_exclusive=*/true);

  flags.add_section("optimization");
  flags.add_int("batch", &c.batch, "sequences per micro-batch", 1, 1 << 20, "12 on CPU, 64 on GPU");
  flags.add_int("grad-accum", &c.grad_accum, "micro-batches per optimizer step", 1, 1 << 20);
  flags.add_int("steps", &c.steps, "optimizer steps", 1, int64_t{1} << 40, "5000");
  flags.add_float("minutes", &c.minutes, "train for this long instead of --steps (the schedule is fitted to it)", 0.0,
                  1e6, true, "off");
  flags.add_float("lr", &c.lr, "peak learning rate", 0.0, 1e30, true, "1e-3; 6e-4 for gpt2");
  flags.add_int("warmup", &c.warmup, "linear warmup steps", 0, int64_t{1} << 40, "5% of the steps, at most 100");
  flags.add_float("min-lr", &c.min_lr, "learning rate at the end of the cosine decay", 0.0, 1e30, false, "lr / 10");
  flags.add_float("weight-decay", &c.weight_decay, "AdamW weight decay (matrices and embeddings only)", 0.0, 10.0);
  flags.add_float("clip", &c.clip, "clip the global gradient norm to this (0: no clipping)", 0.0, 1e6);
  flags.add_int("seed", &c.seed, "seed for initialisation, batches and dropout", 0, INT64_MAX);

  flags.add_section("progress and output");
  flags.add_int("log-every", &c.log_every, "steps between status lines", 1, INT64_MAX);
  flags.add_int("eval-every", &c.eval_every, "steps between validation losses", 1, INT64_MAX, "steps / 10, at most 250");
  flags.add_int("eval-batches", &c.eval_batches, "batches per validation loss", 1, 1 << 20);
  flags.add_int("sample-every", &c.sample_every, "steps between printed samples", 1, INT64_MAX, "steps / 4");
  flags.add_int("sample-tokens", &c.sample_tokens, "tokens per printed sample", 1, 1 << 20);
  flags.add_int("save-every", &c.save_every, "steps between checkpoints (also at every eval and at the end)", 1,
                INT64_MAX, "eval-every");
  flags.add_string("out", &c.out, "run folder: config, metrics, plot, tokenizer, checkpoints", {},
                   "runs/<corpus name>");
  flags.add_switch("resume", &c.resume, "continue the run in --out from its last checkpoint");

  flags.add_section("machine");
  flags.add_string("device", &c.device, "cpu, cuda, cuda:N, or auto (cuda when a GPU is visible)");
  flags.add_string("dtype", &c.dtype,
                   "compute precision; bf16 and fp16 (with loss scaling) keep f32 master weights, CUDA only; auto is "
                   "bf16 on CUDA, fp32 on the CPU", {"auto", "fp32", "bf16", "fp16"});
  flags.add_int("threads", &c.threads, "OpenMP threads", 1, 4096, "all cores");
  flags.add_switch("stochastic-rounding", &c.stochastic_rounding,
                   "bf16/fp16: write the f32 master weights into the model's weights with unbiased stochastic "
                   "rounding instead of to nearest");
  flags.add_switch("mem-stats", &c.mem_stats, "GPU memory on every status line: peak allocated and reserved");
}

void resolve_defaults(RunConfig& c, const FlagSet& flags) {
  if (c.device == "auto") c.device = cuda_available() ? "cuda" : "cpu";
  Device device;
  try {
    device = parse_device(c.device);
  } catch (const Error& e) {
    throw Error(std::string("--device: ") + e.what());
  }
  bool gpu = device.is_cuda();
  if (c.dtype == "auto") c.dtype = gpu ? "bf16" : "fp32";
  if (c.model.empty()) c.model = gpu ? "small" : "tiny";
  ModelShape preset = model_preset(c.model);
  if (c.layers == 0) c.layers = preset.layers;
  if (c.heads == 0) c.heads = preset.heads;
  if (c.embd == 0) c.embd = preset.embd;
  if (c.block == 0) c.block = preset.block;
  if (c.embd % c.heads != 0)
    throw Error("--embd " + std::to_string(c.embd) + " is not divisible by --heads " + std::to_string(c.heads));
  if (c.tokenizer == "char" && flags.given("vocab-size"))
    throw Error("--vocab-size applies to --tokenizer bpe only (the char vocabulary is the file's characters)");
  if (c.tokenizer == "bpe" && c.vocab_size == 0) c.vocab_size = 512;
  if (c.batch == 0) c.batch = gpu ? 64 : 12;
  if (c.steps == 0) c.steps = 5000;
  if (c.lr == 0.0) c.lr = c.model == "gpt2" ? 6e-4 : 1e-3;
  if (c.min_lr < 0.0) c.min_lr = c.lr / 10.0;
  if (c.min_lr > c.lr)
    throw Error("--min-lr " + format_number(c.min_lr) + " is above --lr " + format_number(c.lr));
  if (c.warmup < 0) c.warmup = std::min<int64_t>(100, c.steps / 20);
  if (c.eval_every == 0) c.eval_every = std::max<int64_t>(1, std::min<int64_t>(250, c.steps / 10));
  if (c.sample_every == 0) c.sample_every = std::max<int64_t>(1, c.steps / 4);
  if (c.save_every == 0) c.save_every = c.eval_every;
}

std::string config_to_json(const RunConfig& c) {
  nlohmann::ordered_json j;
  j["data"] = c.data;
  j["out"] = c.out;
  j["model"] = c.model;
  j["layers"] = c.layers;
  j["heads"] = c.heads;
  j["embd"] = c.embd;
  j["block"] = c.block;
  j["dropout"] = c.dropout;
  j["tokenizer"] = c.tokenizer;
  j["vocab-size"] = c.vocab_size;
  j["val-fraction"] = c.val_fraction;
  j["batch"] = c.batch;
  j["grad-accum"] = c.grad_accum;
  j["steps"] = c.steps;
  j["minutes"] = c.minutes;
  j["lr"] = c.lr;
  j["warmup"] = c.warmup;
  j["min-lr"] = c.min_lr;
  j["weight-decay"] = c.weight_decay;
  j["clip"] = c.clip;
  j["seed"] = c.seed;
  j["log-every"] = c.log_every;
  j["eval-every"] = c.eval_every;
  j["eval-batches"] = c.eval_batches;
  j["sample-every"] = c.sample_every;
  j["sample-tokens"] = c.sample_tokens;
  j["save-every"] = c.save_every;
  j["device"] = c.device;
  j["dtype"] = c.dtype;
  j["threads"] = c.threads;
  j["mem-stats"] = c.mem_stats;
  j["stochastic-rounding"] = c.stochastic_rounding;
  return j.dump(2);
}

RunConfig config_from_json(const std::string& text, const std::string& source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error("run configuration in '" + source + "' is not a JSON object");
  RunConfig c;
  try {
    c.data = j.at("data").get<std::string>();
    c.out = j.at("out").get<std::string>();
    c.model = j.at("model").get<std::string>();
    c.layers = j.at("layers").get<int64_t>();
    c.heads = j.at("heads").get<int64_t>();
    c.embd = j.at("embd").get<int64_t>();
    c.block = j.at("block").get<int64_t>();
    c.dropout = j.at("dropout").get<double>();
    c.tokenizer = j.at("tokenizer").get<std::string>();
    c.vocab_size = j.at("vocab-size").get<int64_t>();
    c.val_fraction = j.at("val-fraction").get<double>();
    c.batch = j.at("batch").get<int64_t>();
    c.grad_accum = j.at("grad-accum").get<int64_t>();
    c.steps = j.at("steps").get<int64_t>();
    c.minutes = j.at("minutes").get<double>();
    c.lr = j.at("lr").get<double>();
    c.warmup = j.at("warmup").get<int64_t>();
    c.min_lr = j.at("min-lr").get<double>();
    c.weight_decay = j.at("weight-decay").get<double>();
    c.clip = j.at("clip").get<double>();
    c.seed = j.at("seed").get<int64_t>();
    c.log_every = j.at("log-every").get<int64_t>();
    c.eval_every = j.at("eval-every").get<int64_t>();
    c.eval_batches = j.at("eval-batches").get<int64_t>();
    c.sample_every = j.at("sample-every").get<int64_t>();
    c.sample_tokens = j.at("sample-tokens").get<int64_t>();
    c.save_every = j.at("save-every").get<int64_t>();
    c.device = j.at("device").get<std::string>();
    c.dtype = j.at("dtype").get<std::string>();
    c.threads = j.at("threads").get<int64_t>();
    c.mem_stats = j.value("mem-stats", false);  // absent from configs written before they existed
    c.stochastic_rounding = j.value("stochastic-rounding", false);
  } catch (const nlohmann::json::exception& e) {
    throw Error("run configuration in '" + source + "' is incomplete or mistyped: " + e.what());
  }
  return c;
}

}  // namespace tg
