// The examples of docs/EXTENDING.md, compiled and checked here. tests/test_docs.cpp checks that the
// guide shows these files as they are, so the guide cannot drift from code that works.
#include <gtest/gtest.h>

#include <cmath>

#include "docs/examples/check_gated_mlp.h"
#include "docs/examples/gated_mlp.h"
#include "docs/examples/sincos.h"
#include "docs/examples/softplus.h"
#include "docs/examples/sum_task.h"

using namespace tg;

TEST(ExtendingGuide, ComposedLayerMatchesItsFormula) {
  Generator gen(3);
  example::GatedMLP layer(5, 7, &gen);
  Tensor x = Tensor::randn({3, 5}, &gen);
  auto w1 = layer.w1->weight.to_vector(), w2 = layer.w2->weight.to_vector(), w3 = layer.w3->weight.to_vector();
  auto xv = x.to_vector(), y = layer.forward(x).to_vector();
  for (int r = 0; r < 3; r++)
    for (int o = 0; o < 5; o++) {
      double acc = 0;  // the formula in double, from the weights
      for (int h = 0; h < 7; h++) {
        double a = 0, b = 0;
        for (int i = 0; i < 5; i++) a += w1[h * 5 + i] * xv[r * 5 + i], b += w3[h * 5 + i] * xv[r * 5 + i];
        acc += w2[o * 7 + h] * (a / (1 + std::exp(-a))) * b;
      }
      EXPECT_NEAR(y[r * 5 + o], acc, 1e-5 * (1 + std::fabs(acc)));
    }
}

TEST(ExtendingGuide, ModuleGradcheckPasses) { EXPECT_EQ(example::check_gated_mlp(), ""); }

TEST(ExtendingGuide, OwnKernelFunctionGradchecksThroughAView) {
  Generator gen(5);
  Tensor x = Tensor::randn({4, 3}, &gen).requires_grad_();
  // Through a transposed view, so the graph must link through `record`'s original input.
  auto fn = [](const std::vector<Tensor>& in) { return example::softplus(transpose(in[0], 0, 1)); };
  EXPECT_EQ(gradcheck(fn, {x}), "");
  EXPECT_NEAR(example::softplus(Tensor::scalar(0.0f)).item(), std::log(2.0), 1e-7);
}

TEST(ExtendingGuide, TwoOutputFunction) {
  Generator gen(6);
  Tensor x = Tensor::randn({5}, &gen).requires_grad_();
  // Each output alone (the other's gradient arrives zero-filled), and both through one consumer.
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return example::sincos(in[0])[0]; }, {x}), "");
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return example::sincos(in[0])[1]; }, {x}), "");
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) {
              std::vector<Tensor> sc = example::sincos(in[0]);
              return sc[0] * sc[1];
            },
                      {x}),
            "");
  // sin² + cos² = 1 checks the values themselves.
  std::vector<Tensor> sc = example::sincos(x);
  for (float v : (sc[0] * sc[0] + sc[1] * sc[1]).to_vector()) EXPECT_NEAR(v, 1.0f, 1e-6);
}

TEST(ExtendingGuide, TaskTrainsThroughItsInterface) {
  example::SumTask task(/*n=*/6, /*batch=*/32, /*seed=*/11);
  task.build_model(Device::cpu());
  const double before = task.evaluate()[0].second;
  SGD optimizer(std::vector<ParamGroup>{ParamGroup{task.model().parameters()}}, /*lr=*/0.05f);
  for (int step = 0; step < 200; step++) {
    Tensor loss = task.micro_batch_loss();
    backward(loss);
    optimizer.step();
    optimizer.zero_grad();
  }
  const double after = task.evaluate()[0].second;
  // The target is linear in the input, so the loss goes to ~0; a broken task stays near `before`
  // (about n = 6, the variance of a sum of 6 unit normals, for a near-zero init).
  EXPECT_LT(after, 1e-3 * before) << "before " << before << ", after " << after;
  EXPECT_EQ(task.checkpoint_extras().kind, "sum");
}
