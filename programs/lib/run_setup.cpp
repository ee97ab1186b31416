#include "programs/lib/run_setup.h"

#include <omp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "data/bpe_tokenizer.h"
#include "data/char_tokenizer.h"
#include "data/text_file.h"
#include "tensor/device.h"
#include "tensor/error.h"

namespace fs = std::filesystem;

namespace tg {

std::string last_checkpoint_path(const std::string& out_dir) { return out_dir + "/last.safetensors"; }
std::string best_checkpoint_path(const std::string& out_dir) { return out_dir + "/best.safetensors"; }

static const char* kDescription =
    "Trains a GPT on a text file (the King James Bible from `make data` when no FILE is given),\n"
    "printing progress, validation losses and samples, and saving checkpoints, config.json,\n"
    "metrics.csv, loss.png and the tokenizer in the run folder. Ctrl-C stops after the current\n"
    "step with a checkpoint; run the same command with --resume to continue exactly.\n"
    "Defaults fit the machine: on a CPU the tiny model (0.8M parameters, batch 12) learns the KJV\n"
    "at character level to a validation loss near 1.46 nats in 5000 steps, about 25 ms a step on\n"
    "2 idle cores (a few minutes); on a GPU the small model (10.7M, batch 64) in bf16.\n"
    "\n"
    "examples:\n"
    "  ./train                                   # the default corpus, defaults for this machine\n"
    "  ./train my.txt --model small --steps 5000\n"
    "  ./train my.txt --tokenizer bpe --vocab-size 1024 --minutes 10\n"
    "  ./train my.txt --resume                   # continue runs/my from its last checkpoint\n"
    "  ./generate --ckpt runs/my --prompt 'And'  # sample from it";

static std::string shell_quote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+") ==
                          std::string::npos)
    return arg;
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

static std::string canonical_or_same(const std::string& path) {
  std::error_code error;
  fs::path resolved = fs::weakly_canonical(path, error);
  return error ? path : resolved.string();
}

// On --resume the checkpoint's configuration is the base; flags given again override the
// training settings, and must agree with it on what defines the model and its tokens.
static void overlay_checkpoint_config(RunConfig& c, const FlagSet& flags, const Checkpoint& ckpt) {
  RunConfig saved = config_from_json(ckpt.config_json, ckpt.path);
  if (flags.given("model")) {
    ModelShape preset = model_preset(c.model);
    if (!flags.given("layers")) c.layers = preset.layers;
    if (!flags.given("heads")) c.heads = preset.heads;
    if (!flags.given("embd")) c.embd = preset.embd;
    if (!flags.given("block")) c.block = preset.block;
  }
  bool shape_given = flags.given("model");
  auto locked = [&](const char* name, auto given_value, auto saved_value, bool given) {
    if (given && given_value != saved_value) {
      std::ostringstream text;
      text << "--" << name << " " << given_value << " differs from the checkpoint's " << saved_value << " in "
           << ckpt.path << ": a resumed run keeps its model and tokenizer (drop the flag, or start a new run with "
           << "another --out)";
      throw Error(text.str());
    }
  };
  locked("layers", c.layers, saved.layers, shape_given || flags.given("layers"));
  locked("heads", c.heads, saved.heads, shape_given || flags.given("heads"));
  locked("embd", c.embd, saved.embd, shape_given || flags.given("embd"));
  locked("block", c.block, saved.block, shape_given || flags.given("block"));
  locked("tokenizer", c.tokenizer, saved.tokenizer, flags.given("tokenizer"));
  locked("vocab-size", c.vocab_size, saved.vocab_size, flags.given("vocab-size"));
  if (!c.data.empty() && canonical_or_same(c.data) != canonical_or_same(saved.data))
    throw Error("corpus '" + c.data + "' differs from the checkpoint's '" + saved.data + "' in " + ckpt.path +
                ": a resumed run keeps its corpus");

  RunConfig merged = saved;
  merged.out = c.out;
  merged.resume = true;
  // Everything given again on the command line (other than the locked fields, equal by now) wins.
  nlohmann::json now = nlohmann::json::parse(config_to_json(c)), result = nlohmann::json::parse(config_to_json(merged));
  for (auto& [key, value] : now.items())
    if (flags.given(key)) result[key] = value;
  merged = config_from_json(result.dump(), ckpt.path);
  merged.out = c.out;
  merged.resume = true;
  // Moving a run to another device re-picks that device's precision unless --dtype says otherwise
  // (a bf16 GPU run resumed with --device cpu continues in fp32 from the same weights).
  if (flags.given("device") && !flags.given("dtype")) merged.dtype = "auto";
  c = merged;
}

static void check_machine(const RunConfig& c) {
  Device device = device_from_flag(c.device);
  if (device.is_cpu() && c.dtype != "fp32")
    throw Error("--dtype " + c.dtype + " runs on CUDA only (the CPU kernels compute in fp32); use --dtype fp32, "
                "or --device cuda on a machine with a GPU");
}

// Creates the run folder and proves it writable before anything else is written into it.
static void prepare_out_dir(const std::string& dir) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) throw Error("cannot create output folder '" + dir + "': " + error.message());
  if (!fs::is_directory(dir)) throw Error("output folder '" + dir + "' is not a directory");
  std::string probe = dir + "/.write-test";
  FILE* file = std::fopen(probe.c_str(), "w");
  if (!file) throw Error("cannot write to output folder '" + dir + "': " + std::strerror(errno));
  std::fclose(file);
  std::remove(probe.c_str());
}

static void write_text(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text << "\n";
    if (!out) throw Error("cannot write '" + path + "'");
  }
  fs::rename(tmp, path);
}

std::optional<RunSetup> setup_run(int argc, char** argv) {
  RunSetup run;
  RunConfig& c = run.config;
  FlagSet flags("./train", "[FILE] [flags]", kDescription);
  add_train_flags(flags, c);
  std::vector<std::string> files = flags.parse(argc, argv);
  if (flags.help_requested()) {
    std::printf("%s", flags.help().c_str());
    return std::nullopt;
  }
  if (files.size() > 1)
    throw Error("expected at most one corpus FILE, got " + std::to_string(files.size()) + " ('" + files[0] + "', '" +
                files[1] + "'); see ./train --help");
  if (!files.empty()) c.data = files[0];

  // The run folder defaults to runs/<corpus name>, so the same command finds it again on --resume.
  std::string corpus_for_name = c.data.empty() ? default_corpus_path() : c.data;
  if (c.out.empty()) {
    std::string stem = fs::path(corpus_for_name).stem().string();
    c.out = "runs/" + (stem.empty() ? std::string("run") : stem);
  }
  run.last_path = last_checkpoint_path(c.out);
  run.best_path = best_checkpoint_path(c.out);

  if (c.resume) {
    if (!fs::exists(run.last_path))
      throw Error("--resume: no checkpoint in '" + c.out + "' (expected " + run.last_path +
                  "); run without --resume to start, or pass the run's --out");
    run.resume_from = load_checkpoint(run.last_path);
    overlay_checkpoint_config(c, flags, *run.resume_from);
  } else if (fs::exists(run.last_path)) {
    throw Error("'" + c.out + "' already holds a run (" + run.last_path +
                "); add --resume to continue it, or pass --out with a new folder");
  }
  if (c.data.empty()) {
    c.data = default_corpus_path();
    if (!fs::exists(c.data))
      throw Error("no FILE given and the default corpus " + c.data + " is missing: run `make data` or pass a text file");
  }

  resolve_defaults(c, flags);
  check_machine(c);
  if (c.threads > 0) omp_set_num_threads(static_cast<int>(c.threads));

  std::string text = read_text_file(c.data, "corpus");
  int64_t invalid = first_invalid_utf8(text);
  if (run.resume_from) {
    run.tokenizer = load_tokenizer(run.resume_from->tokenizer_json, run.resume_from->path);
  } else if (c.tokenizer == "bpe") {
    run.tokenizer = std::make_unique<BpeTokenizer>(BpeTokenizer::train(text, c.vocab_size));
  } else {
    if (invalid >= 0)
      std::fprintf(stderr,
                   "train: warning: corpus '%s' is not UTF-8 text (first invalid byte at offset %lld); the char "
                   "tokenizer treats each such byte as a character of its own; --tokenizer bpe is byte-level\n",
                   c.data.c_str(), static_cast<long long>(invalid));
    run.tokenizer = std::make_unique<CharTokenizer>(CharTokenizer::train(text));
  }
  std::vector<int32_t> tokens = run.tokenizer->encode(text);
  run.data = split_tokens(std::move(tokens), c.val_fraction, c.block, c.data);
  c.data = canonical_or_same(c.data);

  prepare_out_dir(c.out);
  write_text(c.out + "/config.json", config_to_json(c));
  write_text(c.out + "/tokenizer.json", run.tokenizer->to_json());

  // The same command with --resume continues the run (its folder is derived from the corpus).
  run.resume_command = "./train";
  for (int i = 1; i < argc; i++)
    if (std::string(argv[i]) != "--resume") run.resume_command += " " + shell_quote(argv[i]);
  run.resume_command += " --resume";
  return run;
}

}  // namespace tg
