// ./train --profile and ./train --plan, end to end, for the text and the image task: the report's
// op sum against the measured step, profile.csv's columns and every product row's FLOPs against
// its shapes, roofline.png, and the planner's lines.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "programs/lib/profile_report.h"
#include "programs/lib/run_setup.h"
#include "tests/program_test_util.h"
#include "tests/test_util.h"

using namespace tg;
using namespace tg::test;

namespace {

// A small GPT whose kernels, not the per-op bookkeeping, fill the step; one thread.
const std::string kModel =
    " --layers 2 --heads 2 --embd 64 --block 32 --batch 8 --threads 1 --device cpu --profile-steps 3";

std::string english(int repeats) {
  std::string text;
  for (int i = 0; i < repeats; i++) text += "the quick brown fox jumps over the lazy dog. ";
  return text;
}

std::vector<std::string> split(const std::string& line, char separator) {
  std::vector<std::string> fields;
  std::stringstream cells(line);
  std::string cell;
  while (std::getline(cells, cell, separator)) fields.push_back(cell);
  return fields;
}

// "a[7x5] b[5x9] out[7x9]" -> the product of the element counts of the named operands.
double product_of_numels(const std::string& shapes, const std::vector<std::string>& names) {
  double product = 1;
  for (const std::string& operand : split(shapes, ' ')) {
    size_t open = operand.find('[');
    if (open == std::string::npos || std::find(names.begin(), names.end(), operand.substr(0, open)) == names.end())
      continue;
    double numel = 1;
    for (const std::string& d : split(operand.substr(open + 1, operand.size() - open - 2), 'x')) numel *= std::stod(d);
    product *= numel;
  }
  return product;
}

bool have_gnuplot() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

// train-* and t10k-* IDX files of random 8x8 images in three classes.
void write_idx(const std::string& folder, int train, int test) {
  std::filesystem::create_directories(folder);
  std::mt19937 rng(5);
  auto be = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
  };
  for (auto [prefix, count] : {std::pair<std::string, int>{"train", train}, {"t10k", test}}) {
    std::string images = be(2051) + be(count) + be(8) + be(8), labels = be(2049) + be(count);
    for (int i = 0; i < count; i++) {
      for (int p = 0; p < 64; p++) images.push_back(static_cast<char>(rng() % 256));
      labels.push_back(static_cast<char>(i % 3));
    }
    std::ofstream(folder + "/" + prefix + "-images-idx3-ubyte", std::ios::binary) << images;
    std::ofstream(folder + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary) << labels;
  }
}

// Checks profile.csv in `run`: its header, and that every product row (matmul, linear, conv2d's
// forward) has the FLOPs its shapes imply. Returns the number of data rows.
int check_profile_csv(const std::string& run) {
  std::istringstream csv(read_file(run + "/profile.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, kProfileCsvHeader);
  const std::vector<std::string> header = split(line, ',');
  int rows = 0, products = 0;
  while (std::getline(csv, line)) {
    rows++;
    std::vector<std::string> f = split(line, ',');
    EXPECT_EQ(f.size(), header.size()) << line;
    if (f.size() != header.size()) continue;
    const std::string& op = f[0];
    const double calls = std::stod(f[4]), flops = std::stod(f[7]);
    // Non-batched products: |a| |b| |out| = (MNK)^2, so 2 M N K = 2 sqrt of it, per call.
    if (op == "matmul" || op == "linear") {
      products++;
      double expected = calls * 2.0 * std::sqrt(product_of_numels(f[3], {"a", "b", "x", "weight", "out"}));
      EXPECT_NEAR(flops, expected, 1e-5 * expected) << line;  // the csv prints 6 significant digits
    }
    EXPECT_TRUE(f[14] == "compute" || f[14] == "memory" || f[14] == "none") << line;
  }
  EXPECT_GT(products, 0);
  return rows;
}

}  // namespace

TEST(ProfileProgram, TextRunReportsOpsAgainstTheStepAndWritesCsvAndPlot) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(200));
  std::string out = dir.file("run");
  Result r = run("train", corpus + kModel + " --profile --out " + out);
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  // The ops run inside the step and never overlap one another (nested fronts record once), so
  // their sum is at most the step; what is left is bookkeeping outside the fronts (allocation,
  // zero-filled gradient buffers, graph nodes), a few percent at this size on an idle core.
  size_t at = r.out.find("the ops add up to ");
  ASSERT_NE(at, std::string::npos) << r.out;
  double percent = std::stod(r.out.substr(r.out.find('(', at) + 1));
  EXPECT_LE(percent, 100.05) << r.out;
  // The lower bound holds only when the process had its core: on a machine shared with other work
  // a wait for the core that falls between two fronts lands in the gap (it was measured at 43%
  // under a load of 15 on 2 cores). The report's busy flag (CPU time under 80% of the wall time)
  // says which case this run was.
  if (r.out.find("the machine was busy") == std::string::npos)
    EXPECT_GE(percent, 75.0) << r.out;
  else
    std::printf("the machine was busy: the ops' share of the step (%.1f%%) is not checked from below\n", percent);
  for (const char* part : {"optimizer", "backward", "forward", "causal_self_attention: attention_backward",
                           "sum of the bounds", "MFU ", "peak memory: parameters"})
    EXPECT_NE(r.out.find(part), std::string::npos) << part << "\n" << r.out;
  EXPECT_GT(check_profile_csv(out), 10);
  EXPECT_TRUE(exists(out + "/profile.txt"));
  if (have_gnuplot()) {
    EXPECT_TRUE(exists(out + "/roofline.png")) << r.out;
  }
  // A measurement, not a run: no checkpoint, so the folder can still start training.
  EXPECT_FALSE(exists(last_checkpoint_path(out)));
}

TEST(ProfileProgram, ImageRunProfilesTheConvolutions) {
  TempDir dir;
  write_idx(dir.file("data"), 120, 12);
  std::string out = dir.file("run");
  Result r = run("train", dir.file("data") + " --model cnn-ref --batch 16 --threads 1 --device cpu --profile "
                 "--profile-steps 1 --out " + out);
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("conv2d"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sgd_update"), std::string::npos) << r.out;
  check_profile_csv(out);
  std::string csv = read_file(out + "/profile.csv");
  EXPECT_NE(csv.find("\nconv2d_backward_weight,conv2d,backward,"), std::string::npos) << csv;
}

TEST(PlanProgram, PrintsEachBlocksDecisionAndExitsWithoutWriting) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", english(50));
  std::string out = dir.file("run");
  Result r = run("train", corpus + kModel + " --plan --out " + out);
  ASSERT_EQ(r.status, 0) << r.err << r.out;
  // n 8 x c 32 at d 64: c > 12 * 64 / 56 = 13.7, so the activations outweigh the weights.
  EXPECT_NE(r.out.find("plan: d_model 64, n 8 x c 32 tokens, 4-byte values; L2 per core"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blocks 0-1: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("c > 12/(7n) d = 14: yes"), std::string::npos) << r.out;
  EXPECT_FALSE(exists(out));

  Result lstm = run("train", corpus + " --arch lstm --layers 1 --embd 32 --device cpu --plan --out " + out);
  ASSERT_EQ(lstm.status, 0) << lstm.err << lstm.out;
  EXPECT_NE(lstm.out.find("plan: the planner decides for transformer blocks; --arch lstm has none"), std::string::npos)
      << lstm.out;

  write_idx(dir.file("images"), 30, 3);
  Result image = run("train", dir.file("images") + " --device cpu --plan --out " + out);
  ASSERT_EQ(image.status, 0) << image.err << image.out;
  EXPECT_NE(image.out.find("the image task's CNN has none"), std::string::npos) << image.out;
  EXPECT_FALSE(exists(out));
}
