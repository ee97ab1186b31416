// What the ./train-under-mpirun tests share: the tiny run, its corpus, the losses of a run's
// metrics.csv, the comparison of a 2-rank run with a 1-process one, and finding a rank's process.
#pragma once
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/types.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "programs/lib/checkpoint.h"
#include "tests/program_test_util.h"

namespace tg::test {

// A tiny GPT on one thread per rank, without dropout (each rank draws its own masks, which one
// process would draw differently) and with a flat learning rate, 20 steps.
inline const std::string kTinyRun =
    " --layers 1 --heads 2 --embd 16 --block 8 --eval-batches 2 --sample-tokens 8 --threads 1 --device cpu"
    " --steps 20 --log-every 1 --eval-every 10 --lr 1e-2 --dropout 0";

inline std::string english(int repeats) {
  std::string text;
  for (int i = 0; i < repeats; i++) text += "the quick brown fox jumps over the lazy dog. ";
  return text;
}

inline std::vector<double> train_losses(const std::string& run_dir) {
  std::vector<double> losses;
  std::istringstream in(read_file(run_dir + "/metrics.csv"));
  std::string line;
  std::getline(in, line);  // header: step,time_s,train_loss,...
  while (std::getline(in, line)) {
    std::stringstream cells(line);
    std::string step, time, loss;
    std::getline(cells, step, ',');
    std::getline(cells, time, ',');
    std::getline(cells, loss, ',');
    if (!loss.empty()) losses.push_back(std::stod(loss));
  }
  return losses;
}

// One process at --batch 8 against two ranks whose micro-batches add up to the same 8 sequences
// a step. What differs is only the order of the sums over the batch: one process adds the 64
// (sequence, position) terms of the loss and of every weight gradient in one reduction; two ranks
// add 32 each and average the two. Each order is within gamma_64 = 64 u (u = 2^-24) of the exact
// sum of magnitudes, so a step's loss and gradients differ by at most 2 * 64 u relative.
// - Losses: the first steps differ by that alone; later ones also through the weights, which
//   move the loss far less than they move themselves. Bound: 10 times the reordering, plus 1e-8
//   for metrics.csv's 9 printed digits. (Measured: at most 1e-7 relative.)
// - Weights: an AdamW update is lr * m / sqrt(v); a relative change d of a gradient moves m by d
//   and sqrt(v) by d / 2, the update by 1.5 d * lr, so 20 steps by 20 * 1.5 * 128 u * lr = 2.3e-6
//   at lr 1e-2 to first order. Where a gradient is near zero, its rounding is large relative to it
//   and m / sqrt(v), which tends to +-1 whatever the gradient's size, amplifies it beyond first
//   order; the bound gives that a factor of 100 (2.3e-4). Measured on the 2-core machine: 7e-5
//   (batch 4) and 1.1e-4 (batch 2 x 2 accumulated).
inline void expect_same_training(const std::string& single_dir, const std::string& ranks_dir) {
  const double u = std::ldexp(1.0, -24), reorder = 2 * 64 * u;
  std::vector<double> one = train_losses(single_dir), two = train_losses(ranks_dir);
  ASSERT_EQ(one.size(), 20u);
  ASSERT_EQ(two.size(), one.size());
  for (size_t s = 0; s < one.size(); s++)
    EXPECT_NEAR(two[s], one[s], 1e-8 + 10 * reorder * one[s]) << "train loss at step " << s + 1;

  Checkpoint a = load_checkpoint(single_dir + "/last.safetensors"), b = load_checkpoint(ranks_dir + "/last.safetensors");
  ASSERT_EQ(a.model.tensors.size(), b.model.tensors.size());
  const double per_step = 1.5 * reorder * 1e-2, bound = 100 * 20 * per_step;
  double worst = 0;
  for (size_t k = 0; k < a.model.tensors.size(); k++) {
    std::vector<float> x = a.model.tensors[k].second.to_vector(), y = b.model.at(a.model.tensors[k].first).to_vector();
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); i++) worst = std::max(worst, std::fabs(double(x[i]) - double(y[i])));
  }
  EXPECT_LE(worst, bound) << "largest parameter difference after 20 steps";
  std::printf("largest parameter difference after 20 steps: %.3g (bound %.3g)\n", worst, bound);
}

// The pid of the ./train rank `rank` whose command line contains `marker` (mpirun's own command
// line contains it too, but not OMPI_COMM_WORLD_RANK in its environment); -1 when none is running.
inline pid_t find_rank(const std::string& marker, int rank) {
  DIR* proc = opendir("/proc");
  if (!proc) return -1;
  pid_t found = -1;
  while (dirent* entry = readdir(proc)) {
    pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (pid <= 0) continue;
    std::string dir = "/proc/" + std::string(entry->d_name);
    std::string cmdline = read_file(dir + "/cmdline"), environ = read_file(dir + "/environ");
    for (char& c : cmdline) if (c == '\0') c = ' ';
    for (char& c : environ) if (c == '\0') c = '\n';
    if (cmdline.find(marker) != std::string::npos && cmdline.find("mpirun") == std::string::npos &&
        environ.find("\nOMPI_COMM_WORLD_RANK=" + std::to_string(rank) + "\n") != std::string::npos)
      found = pid;
  }
  closedir(proc);
  return found;
}

}  // namespace tg::test
