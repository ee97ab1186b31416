// docs/examples/sum_task.h — a task for ./train's one training loop (docs/EXTENDING.md, part 5).
// A toy on purpose: a Linear layer learns to add up the n numbers of a random vector, so that
// every method of the interface is visible in one screen. programs/lib/image_task.cpp is the
// full-sized example.
#pragma once
#include <cstdio>
#include <memory>
#include <string>

#include "programs/lib/task.h"
#include "tilegrad.h"

namespace example {

class SumTask : public tg::Task {
 public:
  SumTask(int64_t n, int64_t batch, uint64_t seed) : n_(n), batch_(batch), seed_(seed), gen_(seed) {}

  std::string kind() const override { return "sum"; }

  void build_model(tg::Device device) override {
    tg::Generator init(seed_);
    model_ = std::make_shared<tg::Linear>(n_, 1, /*bias=*/true, &init);
    device_ = device;
    tg::Generator val(seed_ + 1);  // a fixed validation batch, drawn once
    val_x_ = tg::Tensor::randn({256, n_}, &val);
  }
  tg::Module& model() override { return *model_; }
  std::string architecture() const override { return "{\"inputs\": " + std::to_string(n_) + "}"; }

  // Mean squared error of the predicted sum: loss of one fresh batch, with its graph.
  tg::Tensor micro_batch_loss() override { return loss_of(tg::Tensor::randn({batch_, n_}, &gen_)); }

  tg::Metrics evaluate() override {
    tg::NoGrad no_grad;
    model_->eval();
    double val_loss = loss_of(val_x_).item();
    model_->train();
    return {{"val_loss", val_loss}};
  }

  tg::ExampleUnit example_unit() const override { return {"vec", "vectors_per_s", "vector"}; }
  double examples_per_micro_batch() const override { return static_cast<double>(batch_); }
  double flops_per_example() const override { return 6.0 * n_; }  // 2n forward, 4n backward

  void print_sample(int64_t step) override {
    tg::NoGrad no_grad;
    tg::Tensor x = tg::Tensor::ones({1, n_});
    std::printf("step %lld: sum of %lld ones -> %.3f\n", static_cast<long long>(step), static_cast<long long>(n_),
                model_->forward(x.to(device_)).to(tg::Device::cpu()).item());
  }

  std::string describe_data() const override { return "random vectors of " + std::to_string(n_) + " numbers"; }
  std::string describe_model() const override { return "one Linear, " + std::to_string(n_) + " -> 1"; }
  std::string describe_batch() const override { return std::to_string(batch_) + " x " + std::to_string(n_); }
  std::string next_step_hint(const std::string& out_dir) const override { return "weights in " + out_dir; }

  tg::TaskCheckpoint checkpoint_extras() const override { return {kind(), architecture(), {}, {}}; }
  void restore(const tg::Checkpoint&) override {}  // nothing beyond the model and the loop's state

 private:
  tg::Tensor loss_of(const tg::Tensor& x_cpu) const {
    tg::Tensor x = x_cpu.to(device_);
    tg::Tensor error = model_->forward(x) - tg::sum(x, 1, /*keepdim=*/true);
    return tg::mean(error * error);
  }

  int64_t n_, batch_;
  uint64_t seed_;
  tg::Generator gen_;
  tg::Device device_ = tg::Device::cpu();
  std::shared_ptr<tg::Linear> model_;
  tg::Tensor val_x_;
};

}  // namespace example
