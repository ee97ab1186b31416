// ./train --chunked-loss: the chunked output layer and loss against the unchunked one over a few
// steps, the flag in config.json (and its absence in an older one), ./generate after it, and bad
// values named.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "programs/lib/machine_peak.h"
#include "programs/lib/text_options.h"
#include "tensor/random.h"
#include "tests/program_test_util.h"

using namespace tg;
using namespace tg::test;

namespace {

// Words of one to three syllables drawn from eight: enough distinct pairs for a 300-id BPE
// vocabulary, and many tokens after it (a repeated sentence would merge into a few).
std::string syllable_text(int words, uint64_t seed) {
  static const char* syllables[] = {"ka", "lo", "mi", "ne", "su", "ta", "ri", "po"};
  Generator gen(seed);
  std::string text;
  for (int w = 0; w < words; w++) {
    const uint64_t n = 1 + gen.below(3);
    for (uint64_t s = 0; s < n; s++) text += syllables[gen.below(8)];
    text += w % 12 == 11 ? ".\n" : " ";
  }
  return text;
}

// metrics.csv's train_loss and val_loss cells (empty cells as NaN).
std::vector<double> losses(const std::string& csv) {
  std::vector<double> values;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream row(line);
    std::string cell;
    while (std::getline(row, cell, ',')) cells.push_back(cell);
    for (size_t i : {size_t(2), size_t(3)})
      values.push_back(i < cells.size() && !cells[i].empty() ? std::stod(cells[i]) : std::nan(""));
  }
  return values;
}

const std::string kModel =
    " --layers 1 --heads 2 --embd 16 --block 64 --batch 32 --steps 4 --eval-every 2 --eval-batches 2"
    " --sample-tokens 8 --threads 1 --device cpu --tokenizer bpe --vocab-size 300";

}  // namespace

// 32 x 64 = 2048 tokens of a 300-id vocabulary: 2.5 MB of logits, more than the budget (the L2 of
// a core, larger here than the 19 KB weight), so on and auto chunk them. The losses of the two runs
// differ only by the order of the sums (the mean over the 2048 tokens, dW over them): at the
// first step within gamma_N * loss = N u loss (N = 2048, u = 2^-24), about 7e-4 for a loss near 5.7;
// later steps add what the optimizer makes of gradients that differ as little, given twice that.
TEST(TrainChunkedLoss, OnAndOffGiveTheSameLosses) {
  const int64_t V = 300, tokens = 32 * 64;
  if (static_cast<double>(cpu_l2_bytes_per_core()) >= static_cast<double>(tokens * V * 4))
    GTEST_SKIP() << "this machine's L2 holds all the logits: nothing to chunk";
  TempDir dir;
  std::string corpus = dir.write("words.txt", syllable_text(3000, 5));
  Result on = run("train", corpus + " --out " + dir.file("on") + kModel + " --chunked-loss on");
  ASSERT_EQ(on.status, 0) << on.out << on.err;
  EXPECT_NE(on.out.find("output layer + loss: chunks of "), std::string::npos) << on.out;
  EXPECT_NE(on.out.find("tokens of 2048 (--chunked-loss on"), std::string::npos) << on.out;
  Result off = run("train", corpus + " --out " + dir.file("off") + kModel + " --chunked-loss off");
  ASSERT_EQ(off.status, 0) << off.out << off.err;
  EXPECT_NE(off.out.find("output layer + loss: unchunked (--chunked-loss off)"), std::string::npos) << off.out;
  Result automatic = run("train", corpus + " --out " + dir.file("auto") + kModel + " --steps 1 --eval-every 1");
  ASSERT_EQ(automatic.status, 0) << automatic.out << automatic.err;
  EXPECT_NE(automatic.out.find("(--chunked-loss auto;"), std::string::npos) << automatic.out;
  EXPECT_NE(automatic.out.find("output layer + loss: chunks of "), std::string::npos) << automatic.out;

  std::vector<double> chunked = losses(read_file(dir.file("on/metrics.csv")));
  std::vector<double> unchunked = losses(read_file(dir.file("off/metrics.csv")));
  ASSERT_EQ(chunked.size(), unchunked.size());
  ASSERT_EQ(chunked.size(), 6u);  // steps 1, 2 and 4 x (train, val)
  const double first_step = static_cast<double>(tokens) * std::ldexp(1.0, -24) * unchunked[0];
  for (size_t i = 0; i < chunked.size(); i++) {
    if (std::isnan(unchunked[i])) {
      EXPECT_TRUE(std::isnan(chunked[i])) << i;
      continue;
    }
    EXPECT_NEAR(chunked[i], unchunked[i], i == 0 ? first_step : 2 * first_step) << "cell " << i;
  }

  nlohmann::json config = nlohmann::json::parse(read_file(dir.file("on/config.json")));
  EXPECT_EQ(config.at("chunked-loss"), "on");
  // A configuration written before the flag reads as auto.
  config.erase("chunked-loss");
  EXPECT_EQ(text_options_from_json(config).chunked_loss, "auto");

  Result g = run("generate", "--ckpt " + dir.file("on") + " --prompt 'kalo' --tokens 10 --seed 3 --threads 1");
  ASSERT_EQ(g.status, 0) << g.err;
  EXPECT_EQ(g.out.substr(0, 4), "kalo");
}

TEST(TrainChunkedLoss, BadValuesAreNamed) {
  TempDir dir;
  std::string corpus = dir.write("words.txt", syllable_text(600, 6));
  std::string out = " --out " + dir.file("run") + " --device cpu --threads 1";
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + " --chunked-loss maybe"),
                        "--chunked-loss 'maybe' is not one of auto|on|off");
  EXPECT_ONE_LINE_ERROR(run("train", corpus + out + " --arch lstm --chunked-loss on"),
                        "--chunked-loss applies to --arch gpt only");
  EXPECT_FALSE(exists(dir.file("run")));
}
