// A tiny CNN against PyTorch: logits, loss (plain and label-smoothed), every parameter gradient,
// the BatchNorm running statistics, ten SGD steps (Nesterov, weight decay) and the eval-mode loss
// after them, on the fixture tests/reference/make_cnn_fixture.py writes (computed in float64,
// stored f32). The network uses every layer of the CNN path: convolutions (3x3, a non-square 1x3
// with bias, a stride-2 3x3), BatchNorm (and the fused BatchNorm+ReLU), max pooling over an odd
// size, a residual block, average pooling with padding, global average pooling, flatten, linear.
// The same checks run on the GPU (CNNParityGpu, f32), skipped without one.
//
// Tolerances, as relative error per tensor ||ours - ref|| / ||ref||, fixed before our code first
// ran, the same rule as the GPT fixture's (tests/test_gpt_parity.cpp): 20x PyTorch's own float32
// error against the same reference, which the script prints (logits 2.5e-7, loss 1.1e-9, worst
// gradient 7.2e-7, worst running statistic 1.4e-7), rounded up: 5e-6 for logits, losses and running
// statistics, 2e-5 for gradients and the losses after SGD steps. A subtle bug lands far above: the
// script measures that normalising with the unbiased variance moves the first BatchNorm's output
// by 1.3e-3.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <set>
#include <string>

#include "autograd/engine.h"
#include "autograd/functions/activation.h"
#include "autograd/functions/crossentropy.h"
#include "autograd/functions/pool.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/linear.h"
#include "nn/residual.h"
#include "optim/sgd.h"
#include "tensor/safetensors.h"
#include "tests/cuda_test_util.h"

using namespace tg;
using tg::test::rel_error;

namespace {

constexpr double kLogitsTolerance = 5e-6;
constexpr double kLossTolerance = 5e-6;
constexpr double kRunningStatTolerance = 5e-6;
constexpr double kGradientTolerance = 2e-5;
constexpr double kStepLossTolerance = 2e-5;

std::string cnn_fixture_path() {
  std::string here = __FILE__;  // "tests/test_cnn_parity.cpp": tests are built from the repository root
  return here.substr(0, here.find_last_of('/') + 1) + "reference/cnn_tiny.safetensors";
}

Conv2dParams conv_params(int64_t stride, int64_t pad_h, int64_t pad_w) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride;
  p.pad_h = pad_h;
  p.pad_w = pad_w;
  return p;
}

// The fixture's TinyCNN, layer for layer, with the same names.
struct TinyCNN : Module {
  std::shared_ptr<Conv2d> conv1, conv2, conv3;
  std::shared_ptr<BatchNorm2d> bn1, bn3;
  std::shared_ptr<BasicBlock> block;
  std::shared_ptr<Linear> fc;

  TinyCNN(int64_t channels, int64_t classes) {
    Generator gen(1);  // overwritten by the fixture's weights
    conv1 = register_module("conv1", std::make_shared<Conv2d>(channels, 6, 3, 3, conv_params(1, 1, 1), false, &gen));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(6));
    conv2 = register_module("conv2", std::make_shared<Conv2d>(6, 7, 1, 3, conv_params(1, 0, 1), true, &gen));
    block = register_module("block", std::make_shared<BasicBlock>(7, 7, 1, &gen));
    conv3 = register_module("conv3", std::make_shared<Conv2d>(7, 8, 3, 3, conv_params(2, 1, 1), false, &gen));
    bn3 = register_module("bn3", std::make_shared<BatchNorm2d>(8));
    fc = register_module("fc", std::make_shared<Linear>(8, classes, true, &gen));
  }

  Tensor forward(const Tensor& x) const {
    Pool2dParams max2;
    max2.kernel_h = max2.kernel_w = max2.stride_h = max2.stride_w = 2;
    Pool2dParams avg3;
    avg3.kernel_h = avg3.kernel_w = 3;
    avg3.pad_h = avg3.pad_w = 1;
    avg3.count_include_pad = true;
    Tensor h = bn1->forward_relu(conv1->forward(x));
    h = max_pool2d(conv2->forward(h), max2);
    h = block->forward(h);
    h = relu(bn3->forward(conv3->forward(h)));  // unfused here on purpose: both BatchNorm paths run
    h = avg_pool2d(h, avg3);
    return fc->forward(flatten_nhwc(adaptive_avg_pool2d(h, 1, 1)));
  }
};

struct CnnFixture {
  SafetensorsData data = load_safetensors(cnn_fixture_path());
  std::shared_ptr<TinyCNN> model;

  explicit CnnFixture(Device device = Device::cpu()) {
    model = std::make_shared<TinyCNN>(std::stoll(data.metadata.at("channels")), std::stoll(data.metadata.at("classes")));
    // Everything that is not an input, an output, a gradient or a later statistic is a parameter or
    // a starting buffer; a non-strict load reports only the counters the fixture leaves out.
    const std::set<std::string> not_state = {"x", "y", "logits", "loss", "loss_smoothed", "sgd_losses", "eval_loss_after"};
    NamedTensors state;
    for (const auto& [name, tensor] : data.tensors)
      if (!not_state.count(name) && name.rfind("grad.", 0) != 0 && name.rfind("after1.", 0) != 0)
        state.emplace_back(name, tensor);
    LoadStateDictResult result = model->load_state_dict(state, false);
    EXPECT_TRUE(result.unexpected.empty());
    for (const std::string& name : result.missing)
      EXPECT_NE(name.find("num_batches_tracked"), std::string::npos) << name << " is missing from the fixture";
    if (device != Device::cpu()) model->to(device);
    x = data.at("x").to(device);
    y = data.at("y").to(device);
  }
  const Tensor& at(const std::string& name) const { return data.at(name); }
  Tensor x, y;  // the inputs, on the model's device
};

// One training forward and backward: logits, both losses, every gradient, the running statistics.
void check_first_step(Device device) {
  CnnFixture f(device);
  Tensor logits = f.model->forward(f.x);
  ASSERT_EQ(logits.shape(), f.at("logits").shape());
  const double logits_error = rel_error(logits, f.at("logits"));
  EXPECT_LT(logits_error, kLogitsTolerance);

  const Tensor& y = f.y;
  Tensor loss = cross_entropy(logits, y);
  EXPECT_LT(rel_error(loss, f.at("loss")), kLossTolerance) << "ours " << loss.item() << ", PyTorch " << f.at("loss").item();
  {
    NoGrad no_grad;
    Tensor smoothed = cross_entropy(logits, y, -1, std::stof(f.data.metadata.at("label_smoothing")));
    EXPECT_LT(rel_error(smoothed, f.at("loss_smoothed")), kLossTolerance)
        << "ours " << smoothed.item() << ", PyTorch " << f.at("loss_smoothed").item();
  }

  backward(loss);
  double worst = 0;
  std::string worst_name;
  int compared = 0;
  for (const auto& [name, p] : f.model->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name << " got no gradient";
    const double error = rel_error(p.grad(), f.at("grad." + name));
    EXPECT_LT(error, kGradientTolerance) << name;
    if (error >= worst) worst = error, worst_name = name;
    compared++;
  }
  EXPECT_EQ(compared, static_cast<int>(f.model->parameters().size()));
  EXPECT_EQ(compared, 16);  // 5 conv weights + conv2.bias, 4 BatchNorms x 2, fc x 2

  double worst_stat = 0;
  int stats = 0;
  for (const auto& [name, buffer] : f.model->named_buffers()) {
    if (name.find("num_batches_tracked") != std::string::npos) {
      EXPECT_EQ(buffer.to_vector().at(0), 1.0f) << name << ": one training forward was run";
      continue;
    }
    const double error = rel_error(buffer, f.at("after1." + name));
    EXPECT_LT(error, kRunningStatTolerance) << name;
    worst_stat = std::max(worst_stat, error);
    stats++;
  }
  EXPECT_EQ(stats, 8);  // running_mean and running_var of 4 BatchNorms
  std::printf("  relative error vs float64 PyTorch: logits %.1e, worst gradient %.1e (%s), worst running statistic %.1e\n",
              logits_error, worst, worst_name.c_str(), worst_stat);
}

// Ten SGD steps' losses, then the eval-mode loss with the running statistics.
void check_sgd_steps(Device device) {
  CnnFixture f(device);
  const Tensor& x = f.x;
  const Tensor& y = f.y;
  std::vector<float> reference = f.at("sgd_losses").to_vector();
  ASSERT_EQ(reference.size(), static_cast<size_t>(std::stoll(f.data.metadata.at("sgd_steps"))));
  ParamGroup all;
  all.params = f.model->parameters();
  all.weight_decay = std::stof(f.data.metadata.at("sgd_weight_decay"));  // PyTorch's SGD decays every parameter
  SGD optimizer({all}, std::stof(f.data.metadata.at("sgd_lr")), std::stof(f.data.metadata.at("sgd_momentum")), 0.0f, true);
  double worst = 0;
  for (size_t step = 0; step < reference.size(); step++) {
    optimizer.zero_grad();
    Tensor loss = cross_entropy(f.model->forward(x), y);
    const double error = std::fabs(loss.item() - reference[step]) / reference[step];
    EXPECT_LT(error, kStepLossTolerance) << "step " << step + 1 << ": ours " << loss.item() << ", PyTorch " << reference[step];
    worst = std::max(worst, error);
    backward(loss);
    optimizer.step();
  }
  f.model->eval();
  NoGrad no_grad;
  float eval_loss = cross_entropy(f.model->forward(x), y).item();
  EXPECT_LT(std::fabs(eval_loss - f.at("eval_loss_after").item()) / f.at("eval_loss_after").item(), kStepLossTolerance)
      << "eval-mode loss after the steps (running statistics): ours " << eval_loss << ", PyTorch "
      << f.at("eval_loss_after").item();
  std::printf("  worst relative error of the %zu SGD step losses vs float64 PyTorch: %.1e\n", reference.size(), worst);
  // The run must learn, or matching losses would prove little.
  EXPECT_LT(reference.back(), 0.7f * reference.front());
}

}  // namespace

TEST(CNNParity, LogitsLossGradientsAndRunningStatistics) { check_first_step(Device::cpu()); }
TEST(CNNParity, TenNesterovSGDStepsAndTheEvalLossMatchPyTorch) { check_sgd_steps(Device::cpu()); }

// The same fixture on the GPU in f32 (the SIMT convolution, the CUDA BatchNorm, pooling and loss),
// with the same tolerances: 20x PyTorch's own f32 error, which sums in yet another order.
TEST(CNNParityGpu, LogitsLossGradientsAndRunningStatistics) {
  TG_REQUIRE_GPU();
  check_first_step(test::gpu());
}
TEST(CNNParityGpu, TenNesterovSGDStepsAndTheEvalLossMatchPyTorch) {
  TG_REQUIRE_GPU();
  check_sgd_steps(test::gpu());
}
