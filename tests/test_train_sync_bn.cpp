// ./train --sync-bn under mpirun: with BatchNorm's statistics taken over the whole global batch,
// two ranks at --batch 8 train the CNN that one process trains at --batch 16; without it (each
// rank's own statistics, PyTorch's default) they do not.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/image_data_test_util.h"
#include "tests/mpi_test_util.h"
#include "tests/program_test_util.h"
#include "tests/train_dist_test_util.h"

using namespace tg;
using namespace tg::test;

namespace {

const std::string kCnnRun =
    " --model cnn-ref --threads 1 --device cpu --sample-every 100000 --steps 8 --log-every 1 --eval-every 8"
    " --lr 0.05";

}  // namespace

TEST(TrainSyncBn, TwoRanksWithSyncBnTrainLikeOneProcessAtTheDoubledBatch) {
  std::string why = why_no_mpirun();
  if (!why.empty()) GTEST_SKIP() << why;
  TempDir dir;
  write_idx_dataset(dir.file("data"), 200, 12);
  std::string args = dir.file("data") + kCnnRun;
  Result single = run("train", args + " --batch 16 --out " + dir.file("one"));
  ASSERT_EQ(single.status, 0) << single.out << single.err;
  Result synced = run("train", args + " --batch 8 --sync-bn --out " + dir.file("synced"), mpirun_prefix(2));
  ASSERT_EQ(synced.status, 0) << synced.out << synced.err;
  EXPECT_NE(synced.out.find("--sync-bn: 3 BatchNorm layers"), std::string::npos) << synced.out;
  Result local = run("train", args + " --batch 8 --out " + dir.file("local"), mpirun_prefix(2));
  ASSERT_EQ(local.status, 0) << local.out << local.err;

  // (Measured on the 2-core machine: 2.4e-7 with --sync-bn, 0.14 without.)
  // The synced run differs from the single one by rounding: the BatchNorm statistics (within 4200u
  // of each other, test_dist_mpi.cpp's SyncBatchNorm bound, u = 2^-24) and the reordered sums of
  // the weight gradients over the batch (as in TrainDist's bound), each moving the loss by at most
  // that relative amount in a step, compounded over 8 steps: bound 8 * 10 * 4200u = 2e-2 relative
  // at the last step, far below the per-rank statistics' effect (each rank's mean and variance of
  // 8 images rather than 16: sampling differences of order 1/sqrt(8)), which the run without
  // --sync-bn must show.
  const double u = std::ldexp(1.0, -24), bound = 8 * 10 * 4200 * u;
  std::vector<double> one = train_losses(dir.file("one")), two = train_losses(dir.file("synced")),
                      apart = train_losses(dir.file("local"));
  ASSERT_EQ(one.size(), 8u);
  ASSERT_EQ(two.size(), one.size());
  ASSERT_EQ(apart.size(), one.size());
  double worst_synced = 0, worst_local = 0;
  for (size_t s = 0; s < one.size(); s++) {
    worst_synced = std::max(worst_synced, std::fabs(two[s] - one[s]) / one[s]);
    worst_local = std::max(worst_local, std::fabs(apart[s] - one[s]) / one[s]);
  }
  std::printf("largest relative loss difference over 8 steps: --sync-bn %.3g, per-rank statistics %.3g (bound %.3g)\n",
              worst_synced, worst_local, bound);
  EXPECT_LE(worst_synced, bound);
  EXPECT_GT(worst_local, bound) << "without --sync-bn the ranks' own statistics should change the training";
}

TEST(TrainSyncBn, TheTextTaskRefusesIt) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(20));
  EXPECT_ONE_LINE_ERROR(run("train", corpus + kTinyRun + " --batch 4 --sync-bn --out " + dir.file("run")),
                        "--sync-bn synchronises BatchNorm");
}
