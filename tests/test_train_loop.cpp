// The training loop with a task of the test's own: a two-class linear classifier of 2-D points.
// It shows what a third task takes (one class, no edit to the loop) and checks that the loop
// carries a task's pieces through: its unit on the status line, its metric columns in
// metrics.csv, its final evaluation, its checkpoint extras, and SGD from --optimizer.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/functions/crossentropy.h"
#include "nn/linear.h"
#include "programs/lib/run_setup.h"
#include "programs/lib/trainer.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

// Points uniform in [-1, 1]^2, labelled 1 above the line x0 + x1 = 0: a linear model separates
// them, so accuracy should near 1 in a few dozen SGD steps.
struct Points {
  Tensor x, labels;
};

Points draw_points(int64_t n, Generator& gen) {
  std::vector<float> x;
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < n; i++) {
    float a = 2 * gen.uniform() - 1, b = 2 * gen.uniform() - 1;
    x.push_back(a);
    x.push_back(b);
    labels.push_back(a + b > 0 ? 1 : 0);
  }
  return {Tensor::from_vector(x, {n, 2}), Tensor::from_ints(labels, {n})};
}

class PointsModel : public Module {
 public:
  PointsModel() {
    Generator gen(1);
    fc = register_module("fc", std::make_shared<Linear>(2, 2, true, &gen));
  }
  std::shared_ptr<Linear> fc;
};

class PointsTask : public Task {
 public:
  explicit PointsTask(int64_t batch) : batch_(batch), train_gen_(5) {}

  std::string kind() const override { return "points"; }
  void build_model(Device) override { model_ = std::make_unique<PointsModel>(); }
  Module& model() override { return *model_; }
  std::string architecture() const override { return "{\"model\":\"linear\",\"in\":2,\"out\":2}"; }

  Tensor micro_batch_loss() override {
    Points p = draw_points(batch_, train_gen_);
    draws_++;
    return cross_entropy(model_->fc->forward(p.x), p.labels);
  }
  Metrics evaluate() override {
    auto [loss, accuracy] = measure(11);
    return {{"val_loss", loss}, {"val_accuracy", accuracy}};
  }
  std::vector<std::string> metric_columns() const override { return {"val_accuracy", "test_accuracy"}; }
  Metrics final_evaluation() override { return {{"test_accuracy", measure(12).second}}; }

  ExampleUnit example_unit() const override { return {"pt", "points_per_s", "point"}; }
  double examples_per_micro_batch() const override { return static_cast<double>(batch_); }
  double flops_per_example() const override { return 6.0 * 6; }  // 2x2 weights + bias, forward and backward

  void print_sample(int64_t step) override { std::printf("points sample at step %lld\n", static_cast<long long>(step)); }
  std::string describe_data() const override { return "points: random, 2-D"; }
  std::string describe_model() const override { return "linear 2 -> 2"; }
  std::string describe_batch() const override { return std::to_string(batch_) + " points"; }
  std::string next_step_hint(const std::string& out_dir) const override { return "points done in " + out_dir; }

  TaskCheckpoint checkpoint_extras() const override {
    TaskCheckpoint extras;
    extras.kind = kind();
    extras.architecture = architecture();
    extras.metadata["draws"] = std::to_string(draws_);
    return extras;
  }
  void restore(const Checkpoint& ckpt) override { draws_ = std::stoll(ckpt.task.metadata.at("draws")); }

 private:
  // (mean loss, accuracy) on 512 points drawn from `seed`.
  std::pair<double, double> measure(uint64_t seed) {
    Generator gen(seed);
    Points p = draw_points(512, gen);
    NoGrad no_grad;
    Tensor logits = model_->fc->forward(p.x);
    std::vector<float> l = logits.to_vector();
    std::vector<int32_t> labels = p.labels.to_int_vector();
    int64_t right = 0;
    for (size_t i = 0; i < labels.size(); i++) right += (l[2 * i + 1] > l[2 * i]) == (labels[i] == 1);
    return {cross_entropy(logits, p.labels).item(), static_cast<double>(right) / static_cast<double>(labels.size())};
  }

  int64_t batch_, draws_ = 0;
  Generator train_gen_;
  std::unique_ptr<PointsModel> model_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

TEST(TrainLoop, DrivesATaskOfItsOwn) {
  TempDir dir;
  RunSetup run;
  RunConfig& c = run.config;
  c.task = "points";
  c.out = dir.file("run");
  c.optimizer = "sgd";
  c.batch = 16;
  c.steps = 60;
  c.lr = 0.5;
  c.min_lr = 0.05;
  c.warmup = 0;
  c.weight_decay = 0;
  c.eval_every = 20;
  c.sample_every = 30;
  c.save_every = 20;
  c.device = "cpu";
  c.dtype = "fp32";
  std::filesystem::create_directories(c.out);
  run.last_path = last_checkpoint_path(c.out);
  run.best_path = best_checkpoint_path(c.out);
  run.task = std::make_unique<PointsTask>(c.batch);

  testing::internal::CaptureStdout();
  int status = run_training(run);
  std::string out = testing::internal::GetCapturedStdout();
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("points: random, 2-D\nmodel: linear 2 -> 2, 6 parameters; batch 16 points on cpu in fp32 with SGD"),
            std::string::npos) << out;
  EXPECT_NE(out.find(" pt/s | "), std::string::npos) << out;
  EXPECT_NE(out.find("step 60: val loss "), std::string::npos) << out;
  EXPECT_NE(out.find(", val accuracy "), std::string::npos) << out;
  EXPECT_NE(out.find("step 60: test accuracy "), std::string::npos) << out;
  EXPECT_NE(out.find("points sample at step 30\n"), std::string::npos) << out;
  EXPECT_NE(out.find("points done in " + c.out), std::string::npos) << out;

  std::istringstream csv(read_file(c.out + "/metrics.csv"));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "step,time_s,train_loss,val_loss,lr,points_per_s,val_accuracy,test_accuracy");
  std::vector<std::vector<std::string>> rows;
  while (std::getline(csv, line)) {
    std::vector<std::string> cells;
    std::stringstream in(line + ",");  // a trailing empty cell survives getline
    std::string cell;
    while (std::getline(in, cell, ',')) cells.push_back(cell);
    ASSERT_EQ(cells.size(), 8u) << line;
    rows.push_back(cells);
  }
  ASSERT_FALSE(rows.empty());
  // The last row is the final evaluation: test accuracy only. The one before holds step 60's
  // validation. A linear boundary is learnable exactly; 0.9 leaves room for the last few points
  // near the line.
  EXPECT_EQ(rows.back()[0], "60");
  EXPECT_EQ(rows.back()[3], "");
  EXPECT_GT(std::stod(rows.back()[7]), 0.9);
  const std::vector<std::string>& last_val = rows[rows.size() - 2];
  EXPECT_EQ(last_val[0], "60");
  EXPECT_GT(std::stod(last_val[6]), 0.9);
  EXPECT_EQ(last_val[7], "");

  Checkpoint ckpt = load_checkpoint(run.last_path);
  EXPECT_EQ(ckpt.task.kind, "points");
  EXPECT_EQ(ckpt.task.architecture, "{\"model\":\"linear\",\"in\":2,\"out\":2}");
  EXPECT_EQ(ckpt.task.metadata.at("draws"), "60");
  EXPECT_TRUE(ckpt.optimizer.contains("sgd.momentum.0.0"));
  EXPECT_TRUE(ckpt.model.contains("fc.weight"));
}
