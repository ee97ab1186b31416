// ./train in bf16 and fp16 on the CPU, end to end: both follow fp32's loss curve on the tiny GPT,
// fp16's loss scaler skips an overflowed step and halves the scale, and a bf16 checkpoint (its f32
// masters) resumes in fp32. Past the curve test the LSTM model keeps these runs to milliseconds a
// step; it goes through the same trainer, scaler, optimizer and checkpoint code as the GPT. The
// image task likewise: cnn-ref trains in bf16 and fp16, and its bf16 checkpoint resumes in fp32
// and classifies.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "programs/lib/checkpoint.h"
#include "tests/image_data_test_util.h"
#include "tests/program_test_util.h"

using namespace tg;
using namespace tg::test;

namespace {

const std::string kTinyLstm =
    " --arch lstm --layers 1 --embd 32 --block 16 --batch 4 --eval-batches 2 --sample-every 100000 --threads 1 "
    "--device cpu";

std::string english(int repeats) {
  std::string text;
  for (int i = 0; i < repeats; i++) text += "the quick brown fox jumps over the lazy dog. ";
  return text;
}

// The losses of one column of a run's metrics.csv (1: train, 2: validation, as loss_columns puts
// them), at the steps that logged one.
std::vector<double> losses(const std::string& run_dir, int column) {
  std::vector<double> values;
  for (const std::string& row : loss_columns(read_file(run_dir + "/metrics.csv"))) {
    const size_t first = row.find(','), second = row.find(',', first + 1);
    const std::string cell = column == 1 ? row.substr(first + 1, second - first - 1) : row.substr(second + 1);
    if (!cell.empty() && cell.find("loss") == std::string::npos) values.push_back(std::stod(cell));
  }
  return values;
}

std::vector<double> val_losses(const std::string& run_dir) { return losses(run_dir, 2); }
std::vector<double> train_losses(const std::string& run_dir) { return losses(run_dir, 1); }

// "N steps skipped for fp16 overflow, loss scale S" from the closing line; -1 when absent.
long long skipped_steps(const std::string& out, std::string* scale) {
  size_t at = out.find(" steps skipped for fp16 overflow, loss scale ");
  if (at == std::string::npos) return -1;
  size_t begin = out.rfind(' ', at - 1) + 1;
  size_t scale_at = at + std::string(" steps skipped for fp16 overflow, loss scale ").size();
  *scale = out.substr(scale_at, out.find('\n', scale_at) - scale_at);
  return std::stoll(out.substr(begin, at - begin));
}

std::string printed_scale(double scale) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", scale);
  return text;
}

}  // namespace

// bf16 and fp16 follow the fp32 validation curve over 200 steps of the tiny GPT, the CPU's default
// preset: the CPU's form of TrainProgramGpu.HalfPrecisionFollowsTheF32LossCurve. Half precision's
// rounding makes the runs drift apart the way a different data order does: here by at most 0.06%
// of the loss (measured on both corpora below), so 1% at each of the four evaluations is a margin
// of 15x, while a broken kernel, scaler or master update moves the curve by tenths of a nat or
// more. The small preset's 200 steps would take minutes on two cores; its 300-step runs are
// measured in the README (validation losses within 0.1%).
TEST(TrainProgramHalfCpu, HalfPrecisionFollowsTheF32LossCurve) {
  TempDir dir;
  const std::string corpus = exists("data/corpus/kjv.txt") ? std::string("data/corpus/kjv.txt")
                                                           : dir.write("repo.txt", repository_text());
  const std::string common = corpus + " --device cpu --model tiny --steps 200 --eval-every 50 --eval-batches 10 "
                                      "--sample-every 100000 --log-every 10";
  std::vector<double> f32;
  for (const char* dtype : {"fp32", "bf16", "fp16"}) {
    Result r = run("train", common + " --dtype " + dtype + " --out " + dir.file(dtype));
    ASSERT_EQ(r.status, 0) << dtype << "\n" << r.out << r.err;
    const std::vector<double> val = val_losses(dir.file(dtype)), train = train_losses(dir.file(dtype));
    ASSERT_EQ(val.size(), 4u) << dtype;
    ASSERT_EQ(train.size(), 21u) << dtype;  // steps 1, 10, ..., 200
    EXPECT_LT(train.back(), train.front() - 1.0) << dtype << " did not learn";
    if (f32.empty()) {
      f32 = val;
      continue;
    }
    for (size_t i = 0; i < f32.size(); i++)
      EXPECT_LT(std::fabs(val[i] - f32[i]) / f32[i], 0.01)
          << dtype << " at evaluation " << i << ": " << val[i] << " vs fp32 " << f32[i];
  }
}

// A loss scale of 1e30 overflows fp16 in every backward: each step is skipped (the weights never
// move, so every evaluation gives the same loss) and halves the scale.
TEST(TrainProgramHalfCpu, Fp16OverflowSkipsEveryStepAndHalvesTheScale) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(60));
  Result r = run("train", corpus + " --out " + dir.file("run") + kTinyLstm +
                              " --dtype fp16 --loss-scale 1e30 --steps 6 --eval-every 2 --log-every 1");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("fp16: 1 steps skipped so far (gradient overflow), loss scale now 5e+29"), std::string::npos)
      << r.out;
  std::string scale;
  EXPECT_EQ(skipped_steps(r.out, &scale), 6) << r.out;
  EXPECT_EQ(scale, printed_scale(1e30 / 64.0));
  std::vector<double> val = val_losses(dir.file("run"));
  ASSERT_EQ(val.size(), 3u);
  EXPECT_EQ(val[0], val[1]);
  EXPECT_EQ(val[1], val[2]);
}

// From 1e9 the scale halves until the gradients fit fp16, and then the run learns: the skipped
// steps are the first ones, the scale is 1e9 / 2^skipped, and the loss falls afterwards.
TEST(TrainProgramHalfCpu, Fp16RecoversFromAnOverflowingScaleAndLearns) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(60));
  Result r = run("train", corpus + " --out " + dir.file("run") + kTinyLstm +
                              " --dtype fp16 --loss-scale 1e9 --lr 1e-2 --steps 40 --eval-every 10");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  std::string scale;
  long long skipped = skipped_steps(r.out, &scale);
  ASSERT_GE(skipped, 1) << r.out;
  ASSERT_LT(skipped, 30) << r.out;
  EXPECT_EQ(scale, printed_scale(1e9 / std::ldexp(1.0, static_cast<int>(skipped))));
  std::vector<double> val = val_losses(dir.file("run"));
  ASSERT_EQ(val.size(), 4u);
  EXPECT_LT(val.back(), val.front() - 0.5) << "no learning after the skipped steps";
}

// A bf16 CPU run stores the model in bf16 and AdamW's f32 masters beside it; resumed with
// --dtype fp32, the weights are the masters and training goes on.
TEST(TrainProgramHalfCpu, Bf16CheckpointResumesInF32) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(60));
  std::string args = corpus + " --out " + dir.file("run") + kTinyLstm + " --eval-every 2";
  Result half = run("train", args + " --dtype bf16 --steps 4");
  ASSERT_EQ(half.status, 0) << half.out << half.err;
  EXPECT_NE(half.out.find("on cpu in bf16"), std::string::npos) << half.out;
  Checkpoint ckpt = load_checkpoint(dir.file("run/last.safetensors"));
  int masters = 0, off_the_bf16_grid = 0;
  for (const auto& [name, tensor] : ckpt.optimizer.tensors) {
    if (name.find("master") == std::string::npos) continue;
    masters++;
    EXPECT_EQ(tensor.dtype(), DType::F32) << name;
    std::vector<float> v = tensor.to_vector(), rounded = tensor.to(DType::BF16).to_vector();
    for (size_t i = 0; i < v.size(); i++) off_the_bf16_grid += v[i] != rounded[i];
  }
  EXPECT_GT(masters, 0);
  EXPECT_GT(off_the_bf16_grid, 0) << "the masters hold only bf16 values: the f32 updates were lost";
  for (const auto& [name, tensor] : ckpt.model.tensors) EXPECT_EQ(tensor.dtype(), DType::BF16) << name;

  Result f32 = run("train", args + " --dtype fp32 --steps 6 --resume");
  ASSERT_EQ(f32.status, 0) << f32.out << f32.err;
  EXPECT_NE(f32.out.find("on cpu in fp32"), std::string::npos) << f32.out;
  EXPECT_NE(f32.out.find("done: 6 steps"), std::string::npos) << f32.out;
  for (double v : val_losses(dir.file("run"))) EXPECT_TRUE(std::isfinite(v));
  Checkpoint resumed = load_checkpoint(dir.file("run/last.safetensors"));
  for (const auto& [name, tensor] : resumed.model.tensors) EXPECT_EQ(tensor.dtype(), DType::F32) << name;
}

// ---- the image task (cnn-ref on 8x8 synthetic images, tests/image_data_test_util.h) -----------

const std::string kTinyCnn =
    " --model cnn-ref --batch 16 --threads 1 --device cpu --optimizer adamw --lr 3e-3 --sample-every 100000";

// cnn-ref learns the synthetic classes in bf16 and in fp16 (through the loss scaler) on the CPU:
// every loss finite, the first step's training loss near chance (ln 3 = 1.10), the validation loss
// after 20 steps far below it.
TEST(TrainProgramHalfCpu, ImagesTrainInBf16AndFp16) {
  TempDir dir;
  write_idx_dataset(dir.file("data"), 300, 30);
  for (std::string dtype : {"bf16", "fp16"}) {
    Result r = run("train", dir.file("data") + kTinyCnn + " --dtype " + dtype +
                                " --steps 20 --eval-every 10 --log-every 1 --out " + dir.file("run-" + dtype));
    ASSERT_EQ(r.status, 0) << dtype << r.out << r.err;
    EXPECT_NE(r.out.find("on cpu in " + dtype), std::string::npos) << r.out;
    std::vector<std::string> rows = loss_columns(read_file(dir.file("run-" + dtype + "/metrics.csv")));
    ASSERT_GE(rows.size(), 2u) << dtype;
    const std::string& first = rows[1];  // "1,<train loss>,"
    ASSERT_EQ(first.substr(0, 2), "1,") << first;
    const double first_loss = std::stod(first.substr(2, first.rfind(',') - 2));
    EXPECT_GT(first_loss, 0.9) << dtype;
    std::vector<double> val = val_losses(dir.file("run-" + dtype));
    ASSERT_EQ(val.size(), 2u) << dtype;  // steps 10 and 20 (the test set's row has no val loss)
    for (double v : val) EXPECT_TRUE(std::isfinite(v)) << dtype;
    EXPECT_LT(val.back(), first_loss - 0.5) << dtype << ": no learning";
  }
}

// A bf16 image checkpoint stores the parameters in bf16 beside AdamW's f32 masters, and batch
// norm's running statistics in f32 (as on CUDA); it resumes in fp32 and ./classify reads it.
TEST(TrainProgramHalfCpu, Bf16ImageCheckpointResumesInF32AndClassifies) {
  TempDir dir;
  write_idx_dataset(dir.file("data"), 120, 12);
  std::string args = dir.file("data") + kTinyCnn + " --eval-every 2 --out " + dir.file("run");
  Result half = run("train", args + " --dtype bf16 --steps 4");
  ASSERT_EQ(half.status, 0) << half.out << half.err;
  Checkpoint ckpt = load_checkpoint(dir.file("run/last.safetensors"));
  int running = 0;
  for (const auto& [name, tensor] : ckpt.model.tensors) {
    if (name.find("num_batches_tracked") != std::string::npos) continue;  // an i32 count
    const bool statistic = name.find("running_") != std::string::npos;
    running += statistic;
    EXPECT_EQ(tensor.dtype(), statistic ? DType::F32 : DType::BF16) << name;
  }
  EXPECT_GT(running, 0) << "no batch norm running statistics in the checkpoint";
  std::filesystem::copy_file(dir.file("run/last.safetensors"), dir.file("bf16.safetensors"));

  Result f32 = run("train", args + " --dtype fp32 --steps 6 --resume");
  ASSERT_EQ(f32.status, 0) << f32.out << f32.err;
  EXPECT_NE(f32.out.find("on cpu in fp32"), std::string::npos) << f32.out;
  EXPECT_NE(f32.out.find("step 6/6"), std::string::npos) << f32.out;
  for (double v : val_losses(dir.file("run"))) EXPECT_TRUE(std::isfinite(v));
  Checkpoint resumed = load_checkpoint(dir.file("run/last.safetensors"));
  for (const auto& [name, tensor] : resumed.model.tensors) {
    if (name.find("num_batches_tracked") != std::string::npos) continue;
    EXPECT_EQ(tensor.dtype(), DType::F32) << name;
  }

  // ./classify on the bf16 checkpoint, copied before the resume overwrote it.
  Result c = run("classify", "--ckpt " + dir.file("bf16.safetensors") + " --idx " +
                                 dir.file("data/t10k-images-idx3-ubyte") + " --index 3 --top 2");
  ASSERT_EQ(c.status, 0) << c.out << c.err;
  EXPECT_NE(c.out.find("t10k-images-idx3-ubyte[3]: "), std::string::npos) << c.out;
}
