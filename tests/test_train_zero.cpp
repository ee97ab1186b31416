// ./train --zero 1 under mpirun: AdamW's state sharded over two ranks trains what the unsharded
// two-rank run and the one-process run at the doubled batch train, its checkpoint holds the whole
// state (gathered by rank 0) and resumes at world size 1, and the flags it cannot serve are refused.
#include <gtest/gtest.h>

#include <cmath>

#include "programs/lib/checkpoint.h"
#include "tests/mpi_test_util.h"
#include "tests/program_test_util.h"
#include "tests/train_dist_test_util.h"

using namespace tg;
using namespace tg::test;

namespace {

// The sharded and the unsharded 2-rank runs add the same two gradients per element (a + b is one
// rounding in the reduce-scatter as in the all-reduce, the average's halving is exact) and update
// each element with the same AdamW kernel, so they differ only through the clipping norm (default
// --clip 1): the same squares summed in double in another order, so the f32 clip factor may differ
// by one rounding, u = 2^-24 relative, in a step. A factor common to all gradients leaves AdamW's
// m / sqrt(v) unchanged to first order, so the weights may move by far less than u * lr a step:
// bound 20 steps * u * lr. The moments scale with the factor (v with its square): relative bound
// 20 * 2u. (Measured: both exactly 0.)
void expect_sharding_changes_nothing(const std::string& plain_path, const std::string& zero_path) {
  const double u = std::ldexp(1.0, -24), lr = 1e-2;
  Checkpoint a = load_checkpoint(plain_path), b = load_checkpoint(zero_path);
  ASSERT_EQ(a.optimizer.tensors.size(), b.optimizer.tensors.size()) << "the sharded state should be gathered whole";
  double worst_weight = 0, worst_state = 0;
  for (const auto& [name, tensor] : a.model.tensors) {
    std::vector<float> x = tensor.to_vector(), y = b.model.at(name).to_vector();
    ASSERT_EQ(x.size(), y.size()) << name;
    for (size_t i = 0; i < x.size(); i++) worst_weight = std::max(worst_weight, std::fabs(double(x[i]) - y[i]));
  }
  for (const auto& [name, tensor] : a.optimizer.tensors) {
    ASSERT_TRUE(b.optimizer.contains(name)) << name;
    const Tensor& twin = b.optimizer.at(name);
    ASSERT_EQ(tensor.dtype(), twin.dtype()) << name;
    ASSERT_EQ(tensor.shape(), twin.shape()) << name;
    if (tensor.dtype() == DType::I32) {
      EXPECT_EQ(tensor.to_int_vector(), twin.to_int_vector()) << name;
      continue;
    }
    std::vector<float> x = tensor.to_vector(), y = twin.to_vector();
    for (size_t i = 0; i < x.size(); i++)
      worst_state = std::max(worst_state, std::fabs(double(x[i]) - y[i]) / std::max(1e-30, std::fabs(double(x[i]))));
  }
  EXPECT_LE(worst_weight, 20 * u * lr) << "largest weight difference, sharded vs not";
  EXPECT_LE(worst_state, 20 * 2 * u) << "largest relative optimizer-state difference, sharded vs not";
  std::printf("ZeRO-1 vs unsharded after 20 steps: weights %.3g, optimizer state %.3g relative\n", worst_weight,
              worst_state);
}

}  // namespace

TEST(TrainZero, ShardedAdamWTrainsLikeTheUnshardedRunsAndResumesAtWorldSizeOne) {
  std::string why = why_no_mpirun();
  if (!why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(80));
  Result single = run("train", corpus + kTinyRun + " --batch 8 --out " + dir.file("one"));
  ASSERT_EQ(single.status, 0) << single.err;
  Result plain = run("train", corpus + kTinyRun + " --batch 4 --out " + dir.file("plain"), mpirun_prefix(2));
  ASSERT_EQ(plain.status, 0) << plain.out << plain.err;
  Result zero = run("train", corpus + kTinyRun + " --batch 4 --zero 1 --out " + dir.file("zero"), mpirun_prefix(2));
  ASSERT_EQ(zero.status, 0) << zero.out << zero.err;
  EXPECT_NE(zero.out.find("of optimizer state on this rank ("), std::string::npos) << zero.out;
  EXPECT_NE(zero.out.find("with AdamW (ZeRO-1)"), std::string::npos) << zero.out;

  expect_same_training(dir.file("one"), dir.file("zero"));  // the bound derived there, for 2 ranks vs 1
  EXPECT_EQ(loss_columns(read_file(dir.file("plain/metrics.csv"))), loss_columns(read_file(dir.file("zero/metrics.csv"))));
  expect_sharding_changes_nothing(dir.file("plain/last.safetensors"), dir.file("zero/last.safetensors"));

  // One file, the whole state: one process (plain AdamW) continues from it.
  Result alone = run("train", corpus + kTinyRun + " --batch 4 --out " + dir.file("zero") + " --resume --steps 22");
  ASSERT_EQ(alone.status, 0) << alone.out << alone.err;
  EXPECT_NE(alone.out.find("was trained on 2 rank(s) and resumes on 1"), std::string::npos) << alone.out;
  EXPECT_NE(alone.out.find("step 22/22"), std::string::npos) << alone.out;
}

TEST(TrainZero, FlagsItCannotServeAreRefusedInOneLine) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(20));
  std::string args = corpus + kTinyRun + " --batch 4 --zero 1 --out " + dir.file("run");
  EXPECT_ONE_LINE_ERROR(run("train", args + " --optimizer sgd"), "--zero 1 shards AdamW's state");
  EXPECT_ONE_LINE_ERROR(run("train", args + " --stochastic-rounding"), "--zero 1 does not support --stochastic-rounding");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + kTinyRun + " --batch 4 --zero 2 --out " + dir.file("run")), "--zero");
}
