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

#include "dist/launch.h"
#include "programs/lib/make_task.h"
#include "programs/lib/roofline_probe.h"
#include "programs/lib/run_plan.h"
#include "tensor/device.h"
#include "tensor/error.h"

namespace fs = std::filesystem;

namespace tg {

std::string last_checkpoint_path(const std::string& out_dir) { return out_dir + "/last.safetensors"; }
std::string best_checkpoint_path(const std::string& out_dir) { return out_dir + "/best.safetensors"; }

std::string checkpoint_file_for(const std::string& path) {
  if (!fs::is_directory(path)) return path;
  for (const std::string& candidate : {best_checkpoint_path(path), last_checkpoint_path(path)})
    if (fs::exists(candidate)) return candidate;
  throw Error("--ckpt '" + path + "' is a folder without best.safetensors or last.safetensors; is it a ./train run folder?");
}

static const char* kDescription =
    "Trains a model on your data: a GPT (or an LSTM, --arch lstm) on a text FILE (the King James\n"
    "Bible from `make data` when no DATA is given), or a CNN classifier on a folder of images\n"
    "(IDX files as MNIST and Fashion-MNIST ship them, or one subfolder of PNG/JPEG/BMP files per\n"
    "class). It prints progress, evaluations and samples, and saves checkpoints, config.json,\n"
    "metrics.csv and loss.png in the run folder. Ctrl-C stops after the current step with a\n"
    "checkpoint; run the same command with --resume to continue exactly.\n"
    "Defaults fit the machine: on a CPU the tiny GPT (0.8M parameters, batch 12) learns the KJV at\n"
    "character level to a validation loss near 1.46 nats in 5000 steps (a few minutes on 2 idle\n"
    "cores); on a GPU the small model (10.7M, batch 64) in bf16. Images: the cnn preset, SGD with\n"
    "Nesterov momentum, batch 128, 15 epochs, crop and flip augmentation, label smoothing 0.1; the\n"
    "test set is evaluated once, at the end.\n"
    "\n"
    "examples:\n"
    "  ./train                                   # the default corpus, defaults for this machine\n"
    "  ./train my.txt --model small --steps 5000\n"
    "  ./train my.txt --tokenizer bpe --vocab-size 1024 --minutes 10\n"
    "  ./train my.txt --arch lstm --layers 2 --embd 256   # a character LSTM instead of the GPT\n"
    "  ./train my.txt --resume                   # continue runs/my from its last checkpoint\n"
    "  ./generate --ckpt runs/my --prompt 'And'  # sample from it\n"
    "  ./train data/fashion-mnist                # a CNN on Fashion-MNIST (make data)\n"
    "  ./train photos/ --image-size 64 --model resnet --epochs 30\n"
    "  ./classify --ckpt runs/fashion-mnist shoe.png";

static std::string shell_quote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+") ==
                          std::string::npos)
    return arg;
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// On --resume the checkpoint's configuration is the base; flags given again override the
// training settings, and must agree with it on what defines the model and its data.
static void overlay_checkpoint_config(RunConfig& c, const FlagSet& flags, const Checkpoint& ckpt) {
  RunConfig saved = config_from_json(ckpt.config_json, ckpt.path);
  if (c.task == "text") check_text_resume(c.text, c.model, saved.text, flags, ckpt.path);
  if (c.task == "image") check_image_resume(c.image, c.model, saved.image, saved.model, flags, ckpt.path);
  if (flags.given("optimizer") && c.optimizer != saved.optimizer)
    throw Error("--optimizer " + c.optimizer + " differs from the checkpoint's " + saved.optimizer + " in " +
                ckpt.path + ": a resumed run keeps its optimizer state (drop the flag, or start a new run with "
                "another --out)");
  if (!c.data.empty() && canonical_or_same(c.data) != canonical_or_same(saved.data))
    throw Error(std::string(c.task == "text" ? "corpus" : "data") + " '" + c.data + "' differs from the checkpoint's '" +
                saved.data + "' in " + ckpt.path + ": a resumed run keeps its " +
                (c.task == "text" ? "corpus" : "data"));

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

// The checkpoint's task must be the one the data asks for: text weights cannot resume on images.
static void check_resumed_task(RunConfig& c, const Checkpoint& ckpt) {
  if (!c.data.empty()) {
    std::string kind = task_kind_for(c.data);
    if (kind != ckpt.task.kind)
      throw Error(ckpt.path + " is " + describe_checkpoint_kind(ckpt.task.kind) + ", but '" + c.data + "' is " +
                  kind + " data: a resumed run keeps its task (pass its own data, or start a new run with another "
                  "--out)");
  }
  c.task = ckpt.task.kind;
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

static void write_text(const std::string& path, const std::string& text) {  // atomically
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
  FlagSet flags("./train", "[DATA] [flags]", kDescription);
  add_train_flags(flags, c);
  std::vector<std::string> files = flags.parse(argc, argv);
  if (flags.help_requested()) {
    std::printf("%s", flags.help().c_str());
    return std::nullopt;
  }
  if (files.size() > 1)
    throw Error("expected at most one DATA (a text file or an image folder), got " + std::to_string(files.size()) + " ('" + files[0] + "', '" +
                files[1] + "'); see ./train --help");
  if (!files.empty()) c.data = files[0];

  // The run folder defaults to runs/<corpus name>, so the same command finds it again on --resume.
  std::string corpus_for_name = c.data.empty() ? default_corpus_path() : c.data;
  if (c.out.empty()) {
    fs::path data_path(corpus_for_name);
    if (data_path.filename().empty()) data_path = data_path.parent_path();  // "images/" names the run "images"
    std::string stem = data_path.stem().string();
    c.out = "runs/" + (stem.empty() ? std::string("run") : stem);
  }
  run.last_path = last_checkpoint_path(c.out);
  run.best_path = best_checkpoint_path(c.out);

  // Several processes: each rank reads the data and the checkpoint; rank 0 alone writes the run
  // folder (here and in the loop).
  dist::LaunchInfo launch = dist::detect_launch();
  const bool writer = launch.rank == 0;

  if (c.resume) {
    if (!fs::exists(run.last_path))
      throw Error("--resume: no checkpoint in '" + c.out + "' (expected " + run.last_path +
                  "); run without --resume to start, or pass the run's --out");
    run.resume_from = load_checkpoint(run.last_path);
    check_resumed_task(c, *run.resume_from);
    overlay_checkpoint_config(c, flags, *run.resume_from);
    // The loader's stream is the global batch's: at another world size the batches differ.
    if (c.world_size != launch.world_size && writer)
      std::printf("note: %s was trained on %d rank(s) and resumes on %d: the global batch changes from %lld to %lld "
                  "sequences, so the run continues correctly but not bit for bit as it would have\n",
                  run.last_path.c_str(), c.world_size, launch.world_size, static_cast<long long>(c.batch * c.world_size),
                  static_cast<long long>(c.batch * launch.world_size));
  } else if (fs::exists(run.last_path) && !c.plan) {  // --plan writes nothing
    throw Error("'" + c.out + "' already holds a run (" + run.last_path +
                "); add --resume to continue it, or pass --out with a new folder");
  }
  if (c.data.empty()) {
    c.data = default_corpus_path();
    if (!fs::exists(c.data))
      throw Error("no FILE given and the default corpus " + c.data + " is missing: run `make data` or pass a text file");
  }
  if (!run.resume_from) c.task = task_kind_for(c.data);
  c.rank = launch.rank;
  c.world_size = launch.world_size;

  resolve_defaults(c, flags);
  device_from_flag(c.device);  // a GPU that is not there is named before anything is read or written
  if (c.threads > 0) omp_set_num_threads(static_cast<int>(c.threads));

  // --plan needs the model's shape and the machine, not the data: it prints before anything is read
  // or written.
  if (c.plan) {
    Device device = parse_device(c.device);
    set_device(device);
    Roofline roof = measure_roofline(device, parse_dtype(c.dtype), omp_get_max_threads());
    std::printf("%s", describe_run_plan(c, planner_machine(device, roof)).c_str());
    return std::nullopt;
  }

  run.task = make_task(c, run.resume_from ? &*run.resume_from : nullptr);
  run.task->complete_config(c);
  resolve_schedule_defaults(c);
  c.data = canonical_or_same(c.data);

  if (writer) {
    prepare_out_dir(c.out);
    write_text(c.out + "/config.json", config_to_json(c));
    run.task->write_run_files(c.out);
  }

  // The same command with --resume continues the run (its folder is derived from the corpus).
  run.resume_command = "./train";
  for (int i = 1; i < argc; i++)
    if (std::string(argv[i]) != "--resume") run.resume_command += " " + shell_quote(argv[i]);
  run.resume_command += " --resume";
  return run;
}

}  // namespace tg
