// ./train and ./generate end to end, plus the pieces of programs/lib they are built from (flags,
// sampling, checkpoints). The program tests run the built binaries on tiny corpora in /tmp with a
// 1-layer, 16-wide model, and check exit statuses, the one-line messages and the run folder.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/gpt.h"
#include "optim/adamw.h"
#include "optim/param_group.h"
#include "programs/lib/checkpoint.h"
#include "programs/lib/flags.h"
#include "programs/lib/metrics.h"
#include "programs/lib/sampling.h"
#include "tensor/device.h"
#include "tensor/safetensors.h"
#include "tests/program_test_util.h"
#include "tests/test_util.h"


using namespace tg;
using namespace tg::test;

namespace {


// A tiny model that trains in milliseconds a step, on one CPU thread for bit-identical reruns (on
// the CPU even where a GPU is visible: the GPU runs have tests of their own, TrainProgramGpu).
const std::string kTiny =
    " --layers 1 --heads 2 --embd 16 --block 8 --batch 4 --eval-batches 2 --sample-tokens 8 --threads 1 --device cpu";

std::string english(int repeats) {
  std::string text;
  for (int i = 0; i < repeats; i++) text += "the quick brown fox jumps over the lazy dog. ";
  return text;
}

}  // namespace

// ---- flags ----------------------------------------------------------------------------------

TEST(Flags, ParsesValuesSwitchesAndPositionals) {
  int64_t steps = 5;
  double lr = 0.1;
  std::string mode = "a";
  bool resume = false;
  FlagSet flags("prog", "", "");
  flags.add_int("steps", &steps, "", 1, 100);
  flags.add_float("lr", &lr, "", 0.0, 1.0, true);
  flags.add_string("mode", &mode, "", {"a", "b"});
  flags.add_switch("resume", &resume, "");
  const char* argv[] = {"prog", "file.txt", "--steps", "7", "--lr=0.5", "--mode", "b", "--resume"};
  std::vector<std::string> positional = flags.parse(8, const_cast<char**>(argv));
  EXPECT_EQ(positional, std::vector<std::string>{"file.txt"});
  EXPECT_EQ(steps, 7);
  EXPECT_EQ(lr, 0.5);
  EXPECT_EQ(mode, "b");
  EXPECT_TRUE(resume);
  EXPECT_TRUE(flags.given("steps"));
  EXPECT_NE(flags.help().find("--steps X"), std::string::npos);
}

TEST(Flags, BadInputNamesTheFlag) {
  int64_t steps = 5;
  double lr = 0.1;
  std::string mode = "a";
  FlagSet flags("prog", "", "");
  flags.add_int("steps", &steps, "", 1, 100);
  flags.add_float("lr", &lr, "", 0.0, 1.0, true);
  flags.add_string("mode", &mode, "", {"a", "b"});
  auto parse = [&](std::vector<const char*> args) {
    args.insert(args.begin(), "prog");
    flags.parse(static_cast<int>(args.size()), const_cast<char**>(args.data()));
  };
  EXPECT_THROW_WITH(parse({"--stpes", "3"}), "unknown flag --stpes (did you mean --steps?)");
  EXPECT_THROW_WITH(parse({"--steps", "0"}), "--steps 0 is out of range: expected 1 to 100");
  EXPECT_THROW_WITH(parse({"--steps", "3x"}), "--steps: expected an integer, got '3x'");
  EXPECT_THROW_WITH(parse({"--lr", "0"}), "--lr 0 is out of range: expected more than 0 to 1");
  EXPECT_THROW_WITH(parse({"--lr", "nan"}), "--lr: expected a finite number, got 'nan'");
  EXPECT_THROW_WITH(parse({"--mode", "c"}), "--mode 'c' is not one of a|b");
  EXPECT_THROW_WITH(parse({"--steps"}), "--steps needs a value");
  EXPECT_EQ(steps, 5);  // nothing was assigned from a bad value
}

// Declared arguments (the benchmarks' sizes) take the first positional words in order, with the
// flags' checks under their bare names; the rest come back; absent ones keep their defaults, and a
// required one is an error; a flag of the same name does not exist; repeatable flags hand each
// value to their callback.
TEST(Flags, DeclaredArgumentsTakeThePositionalsInOrder) {
  int64_t rows = 7;
  double scale = 1.0;
  std::string device = "cpu";
  std::vector<std::string> shapes;
  FlagSet flags("prog", "", "");
  flags.add_int_argument("rows", &rows, "row count", 1, 1000);
  flags.add_float_argument("scale", &scale, "", 0.0, 10.0);
  flags.add_string_argument("device", &device, "", {"cpu", "cuda"});
  flags.add_list(
      "shape",
      [&](const std::string& text) {
        if (text.find(',') == std::string::npos) throw Error("expected m,n, got '" + text + "'");
        shapes.push_back(text);
      },
      "a shape");
  auto parse = [&](std::vector<const char*> args) {
    args.insert(args.begin(), "prog");
    return flags.parse(static_cast<int>(args.size()), const_cast<char**>(args.data()));
  };
  EXPECT_EQ(parse({"12", "--shape", "1,2", "2.5", "cuda", "extra", "--shape=3,4"}), std::vector<std::string>{"extra"});
  EXPECT_EQ(rows, 12);
  EXPECT_EQ(scale, 2.5);
  EXPECT_EQ(device, "cuda");
  EXPECT_EQ(shapes, (std::vector<std::string>{"1,2", "3,4"}));
  EXPECT_TRUE(flags.given("rows") && flags.given("device"));

  FlagSet fewer("prog", "", "");
  int64_t count = 7;
  double ratio = 0.5;
  fewer.add_int_argument("count", &count, "", 1, 100);
  fewer.add_float_argument("ratio", &ratio, "", 0.0, 1.0);
  const char* one[] = {"prog", "3"};
  EXPECT_TRUE(fewer.parse(2, const_cast<char**>(one)).empty());
  EXPECT_EQ(count, 3);
  EXPECT_EQ(ratio, 0.5);
  EXPECT_FALSE(fewer.given("ratio"));

  FlagSet needs("prog", "count [ratio]", "");
  needs.add_int_argument("count", &count, "", 1, 100, true);
  needs.add_float_argument("ratio", &ratio, "", 0.0, 1.0);
  const char* none[] = {"prog"};
  EXPECT_THROW_WITH(needs.parse(1, const_cast<char**>(none)), "missing count; usage: prog count [ratio]");
  const char* help_only[] = {"prog", "--help"};
  EXPECT_NO_THROW(needs.parse(2, const_cast<char**>(help_only)));  // --help needs no arguments
  EXPECT_NE(needs.help().find("[default: required]"), std::string::npos);

  EXPECT_THROW_WITH(parse({"0"}), "rows 0 is out of range: expected 1 to 1000");
  EXPECT_THROW_WITH(parse({"12x"}), "rows: expected an integer, got '12x'");
  EXPECT_THROW_WITH(parse({"1", "nan"}), "scale: expected a finite number, got 'nan'");
  EXPECT_THROW_WITH(parse({"1", "1", "tpu"}), "device 'tpu' is not one of cpu|cuda");
  EXPECT_THROW_WITH(parse({"--rows", "3"}), "unknown flag --rows");
  EXPECT_THROW_WITH(parse({"--shape", "5"}), "--shape: expected m,n, got '5'");
  const std::string help = flags.help();
  EXPECT_NE(help.find("arguments, in this order:\n  rows"), std::string::npos) << help;
  EXPECT_NE(help.find("row count [default: "), std::string::npos) << help;
  EXPECT_NE(help.find("--shape X"), std::string::npos) << help;
}

// ---- sampling -------------------------------------------------------------------------------

TEST(Sampling, TemperatureZeroAndTopOneAreArgmax) {
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  Generator gen(1);
  SamplingOptions greedy;
  greedy.temperature = 0;
  SamplingOptions top1;
  top1.top_k = 1;
  for (int i = 0; i < 50; i++) {
    EXPECT_EQ(sample_token(logits.data(), 4, greedy, gen), 1);
    EXPECT_EQ(sample_token(logits.data(), 4, top1, gen), 1);
  }
}

TEST(Sampling, FrequenciesFollowTheSoftmax) {
  // softmax([0, log 3, -inf-ish]) = [0.25, 0.75, ~0]; with top_k 2 the third is excluded anyway.
  std::vector<float> logits = {0.0f, std::log(3.0f), -30.0f};
  Generator gen(7);
  SamplingOptions options;
  options.temperature = 1.0;
  options.top_k = 2;
  const int draws = 20000;
  int ones = 0;
  for (int i = 0; i < draws; i++) {
    int32_t id = sample_token(logits.data(), 3, options, gen);
    ASSERT_NE(id, 2);
    ones += id == 1;
  }
  // Binomial standard deviation sqrt(0.75 * 0.25 / 20000) = 0.0031; 5 sigma keeps this seed-proof.
  EXPECT_NEAR(ones / double(draws), 0.75, 0.016);
}

// ---- metrics.csv ----------------------------------------------------------------------------

// A task's throughput column and extra columns; empty cells where a row did not measure; a resume
// keeps the rows up to its checkpoint's step; a value for a column the file lacks is refused.
TEST(Metrics, TaskColumnsEmptyCellsAndResume) {
  TempDir dir;
  std::string path = dir.file("metrics.csv");
  {
    MetricsLog log(path, "images_per_s", {"val_accuracy", "test_accuracy"}, false, 0);
    MetricsRow row;
    row.step = 1;
    row.train_loss = 2.5;
    row.lr = 0.1;
    row.examples_per_second = 1234.56;
    log.append(row);
    row.step = 2;
    row.val_loss = 1.25;
    row.extra["val_accuracy"] = 0.5;
    log.append(row);
    row.extra["top5"] = 1;
    EXPECT_THROW_WITH(log.append(row), "metrics.csv has no column 'top5'");
  }
  EXPECT_EQ(read_file(path),
            "step,time_s,train_loss,val_loss,lr,images_per_s,val_accuracy,test_accuracy\n"
            "1,0.000,2.5,,0.1,1234.6,,\n"
            "2,0.000,2.5,1.25,0.1,1234.6,0.5,\n");
  MetricsLog resumed(path, "images_per_s", {"val_accuracy", "test_accuracy"}, true, 1);
  EXPECT_EQ(read_file(path), "step,time_s,train_loss,val_loss,lr,images_per_s,val_accuracy,test_accuracy\n"
                             "1,0.000,2.5,,0.1,1234.6,,\n");
}

// ---- checkpoints ----------------------------------------------------------------------------

TEST(Checkpoint, RoundTripsTheTrainingState) {
  TempDir dir;
  TrainState state;
  state.step = 42;
  state.total_steps = 100;
  state.best_val_loss = 1.2345678901234567;  // and infinity below
  state.best_step = 40;
  state.elapsed_seconds = 3.5;
  state.dropout_rng = {5, 6, 7, 0x8000000000000000ull};
  NamedTensors model = {{"w", Tensor::from_vector({1, 2, 3}, {3})}};
  NamedTensors optim = {{"adamw.step", Tensor::from_ints({42}, {})}};
  TaskCheckpoint task;
  task.kind = "image";
  task.architecture = "{\"model\": \"cnn\"}";
  task.metadata["tokenizer"] = "{\"type\": \"char\"}";
  task.tensors = {{"mean", Tensor::from_vector({0.5f, 0.25f}, {2})}};
  save_checkpoint(dir.file("c.safetensors"), model, optim, state, "{\"a\": 1}", task);
  Checkpoint back = load_checkpoint(dir.file("c.safetensors"));
  EXPECT_EQ(back.state.step, 42);
  EXPECT_EQ(back.state.total_steps, 100);
  EXPECT_EQ(back.state.best_val_loss, state.best_val_loss);  // exact: JSON keeps 17 digits
  EXPECT_EQ(back.state.best_step, 40);
  EXPECT_EQ(back.state.elapsed_seconds, 3.5);
  EXPECT_EQ(back.state.dropout_rng, state.dropout_rng);
  EXPECT_EQ(back.config_json, "{\"a\": 1}");
  EXPECT_EQ(back.task.kind, "image");
  EXPECT_EQ(back.task.architecture, task.architecture);
  EXPECT_EQ(back.task.metadata.at("tokenizer"), "{\"type\": \"char\"}");
  ASSERT_EQ(back.task.tensors.size(), 1u);
  EXPECT_EQ(back.task.tensors[0].first, "mean");
  EXPECT_EQ(back.task.tensors[0].second.to_vector(), (std::vector<float>{0.5f, 0.25f}));
  ASSERT_TRUE(back.model.contains("w"));
  EXPECT_EQ(back.model.at("w").to_vector(), (std::vector<float>{1, 2, 3}));
  EXPECT_TRUE(back.optimizer.contains("adamw.step"));
  EXPECT_FALSE(back.model.contains("adamw.step"));
  EXPECT_FALSE(back.model.contains("task.mean"));

  // A task's metadata may not shadow the checkpoint's own entries.
  task.metadata["config"] = "{}";
  EXPECT_THROW_WITH(save_checkpoint(dir.file("d.safetensors"), model, optim, state, "{}", task),
                    "the image task's metadata key 'config' is one the checkpoint writes itself");
}

// Checkpoints written before tasks existed (no "task" entry, the loader's position in the state)
// read as text checkpoints without a recorded architecture.
TEST(Checkpoint, CheckpointsWithoutATaskReadAsText) {
  TempDir dir;
  std::string state = "{\"step\":3,\"total_steps\":9,\"best_val_loss\":null,\"best_step\":-1,"
                      "\"elapsed_seconds\":0.5,\"loader_rng\":[1,2,3,4],\"loader_batches\":3,"
                      "\"dropout_rng\":[5,6,7,8]}";
  save_safetensors(dir.file("old.safetensors"), {{"model.w", Tensor::zeros({2})}},
                   {{"format", "tilegrad-gpt-checkpoint"}, {"version", "1"}, {"config", "{}"}, {"tokenizer", "{}"},
                    {"state", state}, {"step", "3"}});
  Checkpoint old = load_checkpoint(dir.file("old.safetensors"));
  EXPECT_EQ(old.task.kind, "text");
  EXPECT_EQ(old.task.architecture, "");
  EXPECT_EQ(old.task.metadata.at("tokenizer"), "{}");
  EXPECT_EQ(old.state.step, 3);
  EXPECT_EQ(old.state.dropout_rng, (Generator::State{5, 6, 7, 8}));
}

// A half-precision run's checkpoint holds bf16 weights and AdamW's f32 masters; sampling loads the
// masters, bit for bit, not the bf16 rounding of them.
TEST(Checkpoint, FullPrecisionWeightsComeFromTheMasters) {
  TempDir dir;
  GPTConfig config;
  config.vocab_size = 11;
  config.block_size = 8;
  config.n_layer = 1;
  config.n_head = 2;
  config.n_embd = 16;
  GPT half(config, 3);
  half.to(DType::BF16);
  const float weight_decay = 0.1f;
  AdamW optimizer(weight_decay_groups(half.parameters(), weight_decay), 0.1f);
  // One update with zero gradients: only the weight decay moves the masters (by 1%), which leaves
  // them between bf16 values.
  for (Tensor& p : half.parameters()) p.set_grad(Tensor::zeros(p.shape(), DType::BF16));
  optimizer.step();
  NamedTensors training_state = optimizer.state_tensors();
  save_checkpoint(dir.file("c.safetensors"), half.state_dict(), training_state, TrainState{}, "{}", TaskCheckpoint{});
  Checkpoint ckpt = load_checkpoint(dir.file("c.safetensors"));

  GPT full(config, 4), rounded(config, 4);
  load_full_precision_weights(full, ckpt, weight_decay);
  rounded.load_state_dict(ckpt.model);
  std::map<std::string, Tensor> masters(training_state.begin(), training_state.end());
  // Each parameter equals its master exactly, as the optimizer groups and numbers them.
  std::vector<ParamGroup> groups = weight_decay_groups(full.parameters(), weight_decay);
  for (size_t g = 0; g < groups.size(); g++)
    for (size_t i = 0; i < groups[g].params.size(); i++) {
      std::string name = "adamw.master." + std::to_string(g) + "." + std::to_string(i);
      ASSERT_TRUE(masters.count(name)) << name;
      EXPECT_EQ(groups[g].params[i].to_vector(), masters.at(name).to_vector()) << name;
    }
  // And the masters are not the bf16 weights (or this would prove nothing): the decayed ones moved
  // off the bf16 grid.
  NamedTensors params = full.named_parameters(), bf16_params = rounded.named_parameters();
  int differing = 0;
  for (size_t i = 0; i < params.size(); i++) differing += params[i].second.to_vector() != bf16_params[i].second.to_vector();
  EXPECT_GT(differing, 0);
}

TEST(Checkpoint, ForeignAndTruncatedFilesAreNamed) {
  TempDir dir;
  save_safetensors(dir.file("foreign.safetensors"), {{"w", Tensor::zeros({2})}}, {{"format", "pt"}});
  EXPECT_THROW_WITH(load_checkpoint(dir.file("foreign.safetensors")), "is not a tilegrad training checkpoint");
  save_safetensors(dir.file("bare.safetensors"), {{"w", Tensor::zeros({2})}});
  EXPECT_THROW_WITH(load_checkpoint(dir.file("bare.safetensors")), "is not a tilegrad training checkpoint");
  std::string bytes = read_file(dir.file("foreign.safetensors"));
  dir.write("cut.safetensors", bytes.substr(0, bytes.size() - 3));
  EXPECT_THROW_WITH(load_checkpoint(dir.file("cut.safetensors")), "cut.safetensors");
  EXPECT_THROW_WITH(load_checkpoint(dir.file("none.safetensors")), "none.safetensors' does not exist");
}

// Every entry of the training state must be the JSON type the writer wrote: nlohmann's
// get<int64_t>() would cast a float (undefined behaviour past 2^63) or wrap an integer above 2^63,
// and get<uint64_t>() would wrap a negative RNG word.
TEST(Checkpoint, MistypedTrainingStateIsNamed) {
  TempDir dir;
  auto save_with_state = [&](const std::string& state) {
    save_safetensors(dir.file("s.safetensors"), {{"model.w", Tensor::zeros({2})}},
                     {{"format", "tilegrad-gpt-checkpoint"}, {"version", "1"}, {"config", "{}"}, {"state", state}});
  };
  auto state = [](const std::string& step, const std::string& elapsed, const std::string& rng) {
    return "{\"step\":" + step + ",\"total_steps\":9,\"best_val_loss\":null,\"best_step\":-1,\"elapsed_seconds\":" +
           elapsed + ",\"dropout_rng\":" + rng + "}";
  };
  save_with_state(state("3", "0.5", "[5,6,7,8]"));
  EXPECT_EQ(load_checkpoint(dir.file("s.safetensors")).state.step, 3);  // the well-typed baseline loads
  save_with_state(state("1e300", "0.5", "[5,6,7,8]"));
  EXPECT_ERROR_MENTIONS(load_checkpoint(dir.file("s.safetensors")), "s.safetensors", "malformed training state",
                        "'step' must be a 64-bit integer, found a JSON float");
  save_with_state(state("18446744073709551615", "0.5", "[5,6,7,8]"));
  EXPECT_THROW_WITH(load_checkpoint(dir.file("s.safetensors")), "'step' must be a 64-bit integer, found a JSON integer beyond 2^63");
  save_with_state(state("3", "\"soon\"", "[5,6,7,8]"));
  EXPECT_THROW_WITH(load_checkpoint(dir.file("s.safetensors")), "'elapsed_seconds' must be a number, found a JSON string");
  save_with_state(state("3", "0.5", "[5,6,7,-8]"));
  EXPECT_THROW_WITH(load_checkpoint(dir.file("s.safetensors")), "'dropout_rng' must hold unsigned 64-bit integers");
  save_with_state(state("3", "0.5", "[5,6,7,8,9]"));
  EXPECT_THROW_WITH(load_checkpoint(dir.file("s.safetensors")), "'dropout_rng' must be an array of 4 integers");
  save_with_state("[1]");
  EXPECT_THROW_WITH(load_checkpoint(dir.file("s.safetensors")), "a JSON array, expected an object");
}

// ---- ./train end to end ---------------------------------------------------------------------

TEST(TrainProgram, HelpListsEveryFlag) {
  Result r = run("train", "--help");
  EXPECT_EQ(r.status, 0);
  for (const char* flag : {"--model", "--layers", "--heads", "--embd", "--block", "--batch", "--grad-accum", "--steps",
                           "--minutes", "--lr", "--warmup", "--min-lr", "--weight-decay", "--clip", "--dropout",
                           "--eval-every", "--eval-batches", "--sample-every", "--seed", "--out", "--save-every",
                           "--resume", "--device", "--dtype", "--threads", "--tokenizer", "--vocab-size",
                           "--mem-stats", "--stochastic-rounding", "--optimizer", "--momentum", "--val-fraction",
                           "--sample-tokens", "--epochs", "--image-size", "--skip-bad", "--crop-padding", "--flip",
                           "--erase", "--label-smoothing", "--sample-images"})
    EXPECT_NE(r.out.find(std::string(flag) + " "), std::string::npos) << flag;
  // Grouped by what they apply to: the loop's flags first, then the text task's, then the image task's.
  size_t all_tasks = r.out.find("\nall tasks: optimization:\n");
  size_t text = r.out.find("\ntext (FILE is a text file): model, on top of --model's preset:\n");
  size_t images = r.out.find("\nimages (DATA is a folder of IDX files or of class subfolders of images):\n");
  ASSERT_NE(all_tasks, std::string::npos) << r.out;
  ASSERT_NE(text, std::string::npos) << r.out;
  ASSERT_NE(images, std::string::npos) << r.out;
  EXPECT_LT(r.out.find("  --optimizer X"), text);
  EXPECT_LT(r.out.find("  --model X"), text);
  EXPECT_GT(r.out.find("  --tokenizer X"), text);
  EXPECT_GT(r.out.find("  --epochs X"), images);
}

TEST(TrainProgram, TrainsWritesTheRunFolderAndGenerates) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(60));
  std::string out = dir.file("run");
  Result r = run("train", corpus + " --out " + out + kTiny + " --steps 60 --eval-every 20 --lr 1e-2");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "");
  for (const char* name : {"config.json", "metrics.csv", "tokenizer.json", "last.safetensors", "best.safetensors"})
    EXPECT_TRUE(exists(out + "/" + name)) << name;
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) EXPECT_TRUE(exists(out + "/loss.png"));
  else EXPECT_NE(r.out.find("gnuplot is not installed"), std::string::npos);
  EXPECT_NE(r.out.find("step 60/60 | loss"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("---- sample at step 60 ----"), std::string::npos);
  EXPECT_NE(r.out.find("done: 60 steps"), std::string::npos);

  // It learned: the last validation loss is well under the first (a uniform guess over the 28
  // characters is ln 28 = 3.33 nats; this text is learnable to far below that in 60 steps).
  std::vector<double> val;
  std::istringstream csv(read_file(out + "/metrics.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "step,time_s,train_loss,val_loss,lr,tokens_per_s");
  while (std::getline(csv, line)) {
    std::vector<std::string> f;
    std::stringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, ',')) f.push_back(cell);
    ASSERT_EQ(f.size(), 6u) << line;
    if (!f[3].empty()) val.push_back(std::stod(f[3]));
  }
  ASSERT_EQ(val.size(), 3u);
  EXPECT_LT(val.back(), val.front() - 0.5);

  Result g = run("generate", "--ckpt " + out + " --prompt 'the quick' --tokens 20 --seed 3 --threads 1");
  ASSERT_EQ(g.status, 0) << g.err;
  EXPECT_EQ(g.out.substr(0, 9), "the quick");
  EXPECT_EQ(g.out.size(), 9u + 20u + 1u);  // prompt, 20 one-byte characters, the final newline
  Result again = run("generate", "--ckpt " + out + " --prompt 'the quick' --tokens 20 --seed 3 --threads 1");
  EXPECT_EQ(again.out, g.out);  // a seed gives the same text
  EXPECT_ONE_LINE_ERROR(run("generate", "--ckpt " + out + " --prompt 'XYZ'"), "--prompt: character 'X' at byte 0");
  EXPECT_ONE_LINE_ERROR(run("generate", "--ckpt " + dir.file("nowhere")), "nowhere' does not exist");
  EXPECT_ONE_LINE_ERROR(run("generate", "--prompt hi"), "--ckpt is required");
}

// --mlp swiglu: the blocks get LLaMA's gated MLP, the run learns as the GELU one does (the same
// 0.5-nat fall of the validation loss as TrainsWritesTheRunFolderAndGenerates), the config and the
// checkpoint record it, ./generate rebuilds it, and a resume keeps it.
TEST(TrainProgram, SwigluMlpTrainsResumesAndGenerates) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(60));
  std::string out = dir.file("run"), last = out + "/last.safetensors";
  std::string args = corpus + " --out " + out + kTiny + " --mlp swiglu --eval-every 20 --lr 1e-2";
  Result r = run("train", args + " --steps 60");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("swiglu MLP"), std::string::npos) << r.out;
  std::vector<double> val;  // the (step, train, val) rows' validation cells, where there is one
  for (const std::string& row : loss_columns(read_file(out + "/metrics.csv"))) {
    std::string cell = row.substr(row.rfind(',') + 1);
    if (!cell.empty() && cell != "val_loss") val.push_back(std::stod(cell));
  }
  ASSERT_EQ(val.size(), 3u) << read_file(out + "/metrics.csv");
  EXPECT_LT(val.back(), val.front() - 0.5);

  EXPECT_EQ(nlohmann::json::parse(read_file(out + "/config.json")).at("mlp"), "swiglu");
  Checkpoint ckpt = load_checkpoint(last);
  EXPECT_NE(ckpt.task.architecture.find("\"mlp\":\"swiglu\""), std::string::npos) << ckpt.task.architecture;
  // hidden = int(2/3 * 4 * 16) = 42, rounded up to 64; c_fc makes the gate and up halves.
  Shape c_fc_shape;
  for (const auto& [name, tensor] : load_safetensors(last).tensors)
    if (name == "model.h.0.mlp.c_fc.weight") c_fc_shape = tensor.shape();
  EXPECT_EQ(c_fc_shape, (Shape{128, 16}));

  Result g = run("generate", "--ckpt " + out + " --prompt 'the quick' --tokens 20 --seed 3 --threads 1");
  ASSERT_EQ(g.status, 0) << g.err;
  EXPECT_EQ(g.out.substr(0, 9), "the quick");

  std::string saved = read_file(last);
  EXPECT_ONE_LINE_ERROR(run("train", args + " --resume --steps 62 --mlp gelu"),
                        "--mlp gelu differs from the checkpoint's swiglu in " + last);
  EXPECT_EQ(read_file(last), saved);
  Result resumed = run("train", corpus + " --out " + out + " --resume --steps 62 --threads 1 --device cpu");
  ASSERT_EQ(resumed.status, 0) << resumed.out << resumed.err;
  EXPECT_NE(resumed.out.find("step 62/62"), std::string::npos) << resumed.out;
}

TEST(TrainProgram, BpeTokenizerTrainsAndSavesItsMerges) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(80));
  Result r = run("train", corpus + " --out " + dir.file("run") + kTiny +
                              " --steps 5 --eval-every 5 --tokenizer bpe --vocab-size 300");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  std::string tokenizer = read_file(dir.file("run/tokenizer.json"));
  EXPECT_NE(tokenizer.find("\"type\":\"bpe\""), std::string::npos) << tokenizer;
  EXPECT_NE(tokenizer.find("\"merges\":[["), std::string::npos) << tokenizer;
}

TEST(TrainProgram, ResumeAfterSigintIsBitIdentical) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(100));
  // Dropout on, so the dropout generator's state is part of what must survive the restart.
  std::string args = corpus + kTiny + " --steps 800 --log-every 1 --eval-every 200 --sample-every 100000 --dropout 0.1";
  Result straight = run("train", args + " --out " + dir.file("straight"));
  ASSERT_EQ(straight.status, 0) << straight.err;

  std::vector<std::string> argv = split_args(args + " --out " + dir.file("split"));
  Result stopped = run_and_signal(argv, SIGINT, 3);
  ASSERT_EQ(stopped.status, 0) << stopped.err;
  size_t at = stopped.out.find("SIGINT: stopped at step ");
  ASSERT_NE(at, std::string::npos) << "the run ended before the signal arrived:\n" << stopped.out.substr(stopped.out.size() - 300);
  EXPECT_NE(stopped.out.find("resume with: ./train " + corpus), std::string::npos);
  EXPECT_NE(stopped.out.find(" --resume\n"), std::string::npos);

  Result resumed = run("train", args + " --out " + dir.file("split") + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resuming "), std::string::npos);
  std::vector<std::string> a = loss_columns(read_file(dir.file("straight/metrics.csv")));
  std::vector<std::string> b = loss_columns(read_file(dir.file("split/metrics.csv")));
  ASSERT_EQ(a.size(), 801u);
  EXPECT_EQ(a, b);  // every step's train loss and every val loss, to 9 significant digits
}

TEST(TrainProgram, SigtermCheckpointsAndExitsZero) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(100));
  Result r = run_and_signal(split_args(corpus + kTiny + " --steps 100000 --log-every 1 --out " + dir.file("run")),
                            SIGTERM, 2);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("SIGTERM: stopped at step "), std::string::npos);
  Checkpoint ckpt = load_checkpoint(dir.file("run/last.safetensors"));
  EXPECT_GE(ckpt.state.step, 2);
}

TEST(TrainProgram, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(20));
  // An absurd learning rate blows the weights up in one step: step 1 is finite (and checkpointed
  // by --save-every 1), step 2's loss is not.
  Result r = run("train", corpus + " --out " + dir.file("run") + kTiny + " --steps 10 --save-every 1 --lr 1e30 --warmup 0");
  EXPECT_ONE_LINE_ERROR(r, "loss is nan at step 2; stopping (the last good checkpoint is");
  EXPECT_NE(r.err.find("(step 1)"), std::string::npos) << r.err;
  Checkpoint ckpt = load_checkpoint(dir.file("run/last.safetensors"));
  EXPECT_EQ(ckpt.state.step, 1);
}

TEST(TrainProgram, BinaryFileTrainsWithBpeAndWarnsWithChar) {
  TempDir dir;
  Generator gen(2);
  std::string bytes;
  for (int i = 0; i < 3000; i++) bytes += static_cast<char>(gen.below(256));
  std::string corpus = dir.write("blob.bin", bytes);
  Result bpe = run("train", corpus + " --out " + dir.file("bpe") + kTiny + " --steps 3 --tokenizer bpe --vocab-size 260");
  EXPECT_EQ(bpe.status, 0) << bpe.err;
  EXPECT_EQ(bpe.err, "");
  Result chars = run("train", corpus + " --out " + dir.file("char") + kTiny + " --steps 3");
  EXPECT_EQ(chars.status, 0) << chars.err;
  EXPECT_NE(chars.err.find("warning: corpus '" + corpus + "' is not UTF-8 text"), std::string::npos) << chars.err;
  EXPECT_NE(chars.err.find("--tokenizer bpe is byte-level"), std::string::npos);
}

TEST(TrainProgram, BadInputGetsOneLineNamingIt) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(20));
  std::string out = " --out " + dir.file("run");
  EXPECT_ONE_LINE_ERROR(run("train", dir.file("missing.txt") + out + kTiny), "missing.txt' cannot be opened: No such file");
  // A directory is image data: this one holds neither IDX files nor class folders.
  EXPECT_ONE_LINE_ERROR(run("train", dir.path + out + " --device cpu"), "is neither a folder of IDX files");
  EXPECT_ONE_LINE_ERROR(run("train", dir.path + out + " --tokenizer bpe"),
                        "--tokenizer applies to text data (a FILE) only, and this run's data is image data");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + kTiny + " --momentum 0.5"),
                        "--momentum applies to --optimizer sgd only");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + kTiny + " --optimizer sgd --dtype bf16"),
                        "--dtype bf16 needs f32 master weights, which --optimizer sgd does not keep");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + kTiny + " --optimizer lion"), "--optimizer 'lion' is not one of adamw|sgd");
  EXPECT_ONE_LINE_ERROR(run("train", dir.write("empty.txt", "") + out + kTiny), "empty.txt' is empty");
  // 40 characters: 36 train + 4 validation tokens, and block 8 needs 9 in each.
  EXPECT_ONE_LINE_ERROR(run("train", dir.write("short.txt", english(1).substr(0, 40)) + out + kTiny),
                        "short.txt' is too short: its 40 tokens split into 36 for training and 4 for validation");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + " --bogus 3"), "unknown flag --bogus");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + " --steps 0"), "--steps 0 is out of range");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + " --lr -1"), "--lr -1 is out of range");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + " --model huge"), "--model 'huge' is not one of");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + " --embd 30 --heads 4"), "--embd 30 is not divisible by --heads 4");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + " --vocab-size 300"), "--vocab-size applies to --tokenizer bpe only");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " other.txt" + out), "expected at most one DATA (a text file or an image folder)");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --out " + corpus + "/sub" + kTiny), "cannot create output folder");
  if (!cuda_available())
    EXPECT_ONE_LINE_ERROR(run("train", corpus + out + kTiny + " --device cuda"), "--device cuda: no CUDA GPU is available (");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + kTiny + " --resume"), "--resume: no checkpoint in");
  EXPECT_FALSE(exists(dir.file("run")));  // nothing was created by any of these
}

TEST(TrainProgram, UnreadableFileGetsOneLineNamingIt) {
  TempDir dir;
  chmod(dir.path.c_str(), 0755);  // traversable, so the error is the file's, not the folder's
  std::string locked = dir.write("locked.txt", english(20));
  chmod(locked.c_str(), 0);
  // Root reads files whatever their permissions (and CI runs as root): run it as `nobody` then.
  std::string prefix;
  if (geteuid() == 0) {
    if (std::system("command -v setpriv >/dev/null 2>&1") != 0) GTEST_SKIP() << "running as root without setpriv";
    prefix = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  }
  EXPECT_ONE_LINE_ERROR(run("train", locked + " --out " + dir.file("run") + kTiny, prefix),
                        "locked.txt' cannot be read: Permission denied");
  EXPECT_FALSE(exists(dir.file("run")));
}

TEST(TrainProgram, BadResumeLosesNothing) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(30));
  std::string run_dir = dir.file("run");
  std::string args = corpus + " --out " + run_dir + kTiny + " --steps 4 --eval-every 2";
  ASSERT_EQ(run("train", args).status, 0);
  std::string last = run_dir + "/last.safetensors";
  std::string saved = read_file(last), metrics = read_file(run_dir + "/metrics.csv");

  EXPECT_ONE_LINE_ERROR(run("train", args), "already holds a run");
  EXPECT_ONE_LINE_ERROR(run("train", args + " --resume --layers 2"),
                        "--layers 2 differs from the checkpoint's 1 in " + last);
  EXPECT_ONE_LINE_ERROR(run("train", corpus + " --out " + run_dir + " --resume --model small"),
                        "--layers 6 differs from the checkpoint's 1");
  EXPECT_ONE_LINE_ERROR(run("train", args + " --resume --tokenizer bpe"),
                        "--tokenizer bpe differs from the checkpoint's char");
  EXPECT_ONE_LINE_ERROR(run("train", dir.write("other.txt", english(30)) + " --out " + run_dir + " --resume"),
                        "differs from the checkpoint's");
  EXPECT_ONE_LINE_ERROR(run("train", args + " --resume --optimizer sgd"),
                        "--optimizer sgd differs from the checkpoint's adamw in " + last);
  EXPECT_EQ(read_file(last), saved);
  EXPECT_EQ(read_file(run_dir + "/metrics.csv"), metrics);

  // A foreign checkpoint (a safetensors file from elsewhere) and a truncated one.
  save_safetensors(last, {{"w", Tensor::zeros({2})}});
  EXPECT_ONE_LINE_ERROR(run("train", args + " --resume"), "is not a tilegrad training checkpoint");
  std::ofstream(last, std::ios::binary) << saved.substr(0, saved.size() / 2);
  EXPECT_ONE_LINE_ERROR(run("train", args + " --resume"), last);
}

namespace {

// The columns of a run's metrics.csv: train losses of the logged steps and the validation losses.
struct Curves {
  std::vector<double> train, val;
};

Curves read_curves(const std::string& run_dir) {
  Curves c;
  std::istringstream csv(read_file(run_dir + "/metrics.csv"));
  std::string line;
  std::getline(csv, line);
  while (std::getline(csv, line)) {
    std::vector<std::string> f;
    std::stringstream cells(line);
    std::string cell;
    while (std::getline(cells, cell, ',')) f.push_back(cell);
    if (f.size() < 4) continue;
    if (!f[2].empty()) c.train.push_back(std::stod(f[2]));
    if (!f[3].empty()) c.val.push_back(std::stod(f[3]));
  }
  return c;
}

// Rewrites a checkpoint's metadata entries through `edit` (tensors unchanged).
void edit_checkpoint(const std::string& path, const std::function<void(std::map<std::string, std::string>&)>& edit) {
  SafetensorsData data = load_safetensors(path);
  edit(data.metadata);
  save_safetensors(path, data.tensors, data.metadata);
}

}  // namespace

// SGD (Nesterov momentum) through the same loop: it learns, and a run stopped by SIGINT and
// resumed gives every loss of an uninterrupted run, bit for bit, as AdamW's does (the momentum
// buffers travel in the checkpoint).
TEST(TrainProgram, SgdTrainsAndResumesBitIdentically) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(100));
  std::string args = corpus + kTiny + " --optimizer sgd --lr 0.5 --steps 800 --log-every 1 --eval-every 200 " +
                     "--sample-every 100000 --dropout 0.1";
  Result straight = run("train", args + " --out " + dir.file("straight"));
  ASSERT_EQ(straight.status, 0) << straight.err;
  EXPECT_NE(straight.out.find("with SGD"), std::string::npos) << straight.out.substr(0, 400);
  Curves curves = read_curves(dir.file("straight"));
  ASSERT_EQ(curves.val.size(), 4u);
  EXPECT_LT(curves.val.back(), curves.val.front() - 0.5) << "SGD did not learn";
  Checkpoint ckpt = load_checkpoint(dir.file("straight/last.safetensors"));
  EXPECT_TRUE(ckpt.optimizer.contains("sgd.momentum.0.0"));
  EXPECT_FALSE(ckpt.optimizer.contains("adamw.step"));

  ASSERT_NO_FATAL_FAILURE(stop_and_resume(args, dir.file("split"), 3));
  std::vector<std::string> a = loss_columns(read_file(dir.file("straight/metrics.csv")));
  std::vector<std::string> b = loss_columns(read_file(dir.file("split/metrics.csv")));
  ASSERT_EQ(a.size(), 801u);
  EXPECT_EQ(a, b);
}

// A checkpoint written before tasks existed (no task, architecture or optimizer entries; the
// loader's position in the loop's state) resumes as a text run, exactly.
TEST(TrainProgram, CheckpointFromBeforeTasksResumesExactly) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(100));
  std::string args = corpus + kTiny + " --steps 800 --log-every 1 --eval-every 200 --sample-every 100000 --dropout 0.1";
  ASSERT_EQ(run("train", args + " --out " + dir.file("straight")).status, 0);
  Result stopped = run_and_signal(split_args(args + " --out " + dir.file("split")), SIGINT, 3);
  ASSERT_EQ(stopped.status, 0) << stopped.err;
  ASSERT_NE(stopped.out.find("SIGINT: stopped at step "), std::string::npos) << "the run ended before the signal";
  edit_checkpoint(dir.file("split/last.safetensors"), [](std::map<std::string, std::string>& meta) {
    nlohmann::json loader = nlohmann::json::parse(meta.at("loader")), state = nlohmann::json::parse(meta.at("state"));
    state["loader_rng"] = loader["rng"];
    state["loader_batches"] = loader["batches"];
    meta["state"] = state.dump();
    nlohmann::json config = nlohmann::json::parse(meta.at("config"));
    for (const char* key : {"task", "optimizer", "momentum", "arch"}) config.erase(key);
    meta["config"] = config.dump();
    for (const char* key : {"task", "architecture", "loader"}) meta.erase(key);
  });
  Result resumed = run("train", args + " --out " + dir.file("split") + " --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(loss_columns(read_file(dir.file("straight/metrics.csv"))),
            loss_columns(read_file(dir.file("split/metrics.csv"))));
}

// The loader's position is read by JSON type too: a float where the batch count should be is a
// one-line error naming the checkpoint, not undefined behaviour in a cast.
TEST(TrainProgram, MistypedLoaderPositionIsNamed) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(30));
  std::string args = corpus + kTiny + " --steps 4 --eval-every 1000 --sample-every 100000 --out " + dir.file("run");
  ASSERT_EQ(run("train", args).status, 0);
  edit_checkpoint(dir.file("run/last.safetensors"), [](std::map<std::string, std::string>& meta) {
    nlohmann::json loader = nlohmann::json::parse(meta.at("loader"));
    loader["batches"] = 1e300;
    meta["loader"] = loader.dump();
  });
  EXPECT_ONE_LINE_ERROR(run("train", args + " --steps 8 --resume"),
                        "malformed loader position: 'batches' must be a 64-bit integer, found a JSON float");
}

// A checkpoint records its task and model: --resume on other data or with another model, and
// ./generate on a non-text checkpoint, each say so in one line.
TEST(TrainProgram, CheckpointsOfAnotherTaskOrModelAreRefused) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(30));
  std::string run_dir = dir.file("run"), last = run_dir + "/last.safetensors";
  std::string args = corpus + " --out " + run_dir + kTiny + " --steps 2 --eval-every 2";
  ASSERT_EQ(run("train", args).status, 0);
  Checkpoint ckpt = load_checkpoint(last);
  EXPECT_EQ(ckpt.task.kind, "text");
  EXPECT_NE(ckpt.task.architecture.find("\"n_embd\":16"), std::string::npos) << ckpt.task.architecture;

  // Another architecture than the flags build (a vocabulary of another size, say).
  std::string saved = read_file(last);
  edit_checkpoint(last, [](std::map<std::string, std::string>& meta) {
    meta["architecture"] = "{\"model\":\"gpt\",\"vocab_size\":99}";
  });
  EXPECT_ONE_LINE_ERROR(run("train", args + " --resume --steps 4"), last + " holds another model than this run builds");

  // An image classifier's checkpoint.
  edit_checkpoint(last, [](std::map<std::string, std::string>& meta) { meta["task"] = "image"; });
  EXPECT_ONE_LINE_ERROR(run("train", args + " --resume --steps 4"),
                        last + " is an image-classifier checkpoint, but '" + corpus + "' is text data");
  EXPECT_ONE_LINE_ERROR(run("generate", "--ckpt " + last),
                        last + " is an image-classifier checkpoint; ./generate samples text models — use ./classify");
  std::ofstream(last, std::ios::binary) << saved;
  EXPECT_EQ(run("generate", "--ckpt " + last + " --tokens 4").status, 0);
}

// ---- ./train on the GPU (skipped without one) ----------------------------------------------------

namespace {

#define REQUIRE_GPU_PROGRAM()                                                  \
  do {                                                                         \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU (" << cuda_status() << ")"; \
  } while (0)

}  // namespace

// fp16 (with the loss scaler) and bf16 follow the fp32 curve of the small preset over 200 steps.
// Tolerance: 3% of the fp32 validation loss at each of the four evaluations. Half precision
// perturbs every weight update by its rounding (bf16: 2^-9 relative), a noise that makes runs
// drift apart the way a different data order does; 3% (about 0.06 nats at a loss of 2) is above
// that drift on this run length and far below what a broken kernel or scaler does (a skipped
// update every step, or an unscaled gradient, stalls or diverges the curve by whole nats).
TEST(TrainProgramGpu, HalfPrecisionFollowsTheF32LossCurve) {
  REQUIRE_GPU_PROGRAM();
  TempDir dir;
  // The default corpus when `make data` has written it (4.3 MB: no overfitting in 200 steps),
  // otherwise this repository's text.
  std::string corpus = exists("data/corpus/kjv.txt") ? std::string("data/corpus/kjv.txt")
                                                     : dir.write("repo.txt", repository_text());
  std::string common = corpus + " --device cuda --model small --steps 200 --eval-every 50 --eval-batches 10 "
                                "--sample-every 100000 --log-every 10";
  std::map<std::string, Curves> curves;
  for (const char* dtype : {"fp32", "bf16", "fp16"}) {
    Result r = run("train", common + " --dtype " + dtype + " --out " + dir.file(dtype));
    ASSERT_EQ(r.status, 0) << dtype << "\n" << r.out << r.err;
    curves[dtype] = read_curves(dir.file(dtype));
    ASSERT_EQ(curves[dtype].val.size(), 4u) << dtype;
  }
  // Learning is judged on the training loss (step 1 against step 200), which falls even if a small
  // corpus makes the validation loss turn.
  const std::vector<double>& f32_train = curves["fp32"].train;
  EXPECT_LT(f32_train.back(), f32_train.front() - 1.0) << "the fp32 run did not learn";
  const std::vector<double>& f32 = curves["fp32"].val;
  for (const char* dtype : {"bf16", "fp16"})
    for (size_t i = 0; i < f32.size(); i++)
      EXPECT_LT(std::fabs(curves[dtype].val[i] - f32[i]) / f32[i], 0.03)
          << dtype << " at evaluation " << i << ": " << curves[dtype].val[i] << " vs fp32 " << f32[i];
}

// The same command twice gives the same losses, bit for bit (printed with %.4f in metrics.csv,
// compared as the text).
TEST(TrainProgramGpu, SameSeedGivesTheSameLosses) {
  REQUIRE_GPU_PROGRAM();
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(200));
  std::string args = corpus + " --device cuda --dtype bf16 --layers 2 --heads 2 --embd 64 --block 32 --batch 8 "
                              "--steps 30 --log-every 1 --eval-every 10 --sample-every 100000 --dropout 0.1";
  ASSERT_EQ(run("train", args + " --out " + dir.file("a")).status, 0);
  ASSERT_EQ(run("train", args + " --out " + dir.file("b")).status, 0);
  Curves a = read_curves(dir.file("a")), b = read_curves(dir.file("b"));
  ASSERT_EQ(a.train.size(), 30u);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.val, b.val);
}

// A checkpoint written on one device resumes on the other: GPU (bf16) -> CPU (fp32) -> GPU.
TEST(TrainProgramGpu, CheckpointsMoveBetweenDevices) {
  REQUIRE_GPU_PROGRAM();
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(60));
  std::string args = corpus + " --out " + dir.file("run") +
                     " --layers 1 --heads 2 --embd 32 --block 16 --batch 4 --eval-every 2 --sample-every 100000";
  Result gpu = run("train", args + " --device cuda --dtype bf16 --steps 4");
  ASSERT_EQ(gpu.status, 0) << gpu.out << gpu.err;
  Result cpu = run("train", args + " --device cpu --steps 6 --resume");
  ASSERT_EQ(cpu.status, 0) << cpu.out << cpu.err;
  EXPECT_NE(cpu.out.find("resuming"), std::string::npos);
  EXPECT_NE(cpu.out.find("done: 6 steps"), std::string::npos) << cpu.out;
  Result back = run("train", args + " --device cuda --steps 8 --resume");
  ASSERT_EQ(back.status, 0) << back.out << back.err;
  EXPECT_NE(back.out.find("done: 8 steps"), std::string::npos) << back.out;
  Curves c = read_curves(dir.file("run"));
  for (double v : c.val) EXPECT_TRUE(std::isfinite(v));
  // ./generate reads the GPU-written checkpoint on the CPU.
  Result g = run("generate", "--ckpt " + dir.file("run") + " --device cpu --tokens 10 --seed 1");
  EXPECT_EQ(g.status, 0) << g.err;
}
