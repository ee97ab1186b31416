// Functions of several outputs (one node, one gradient slot per output), and gradcheck over a
// module's parameters. The functions are defined here with plain loops, as a user would add one.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "nn/gradcheck.h"
#include "nn/linear.h"

using namespace tg;

namespace {

// (s, p) = (a + b, a * b), elementwise: two outputs that both depend on both inputs, so a wrong
// routing of either output's gradient shows up in both inputs' gradients.
std::vector<Tensor> sum_and_product(const Tensor& a, const Tensor& b) {
  Tensor s = Tensor::empty_like(a), p = Tensor::empty_like(a);
  for (int64_t i = 0; i < a.numel(); i++) {
    s.data<float>()[i] = a.data<float>()[i] + b.data<float>()[i];
    p.data<float>()[i] = a.data<float>()[i] * b.data<float>()[i];
  }
  return record("sum_and_product", {a, b}, {s, p},
                [a, b](const std::vector<Tensor>& grad_outputs, std::vector<Tensor>& grad_inputs) {
                  const float* ds = grad_outputs[0].data<float>();
                  const float* dp = grad_outputs[1].data<float>();
                  for (int64_t i = 0; i < a.numel(); i++) {
                    if (grad_inputs[0].defined()) grad_inputs[0].data<float>()[i] += ds[i] + dp[i] * b.data<float>()[i];
                    if (grad_inputs[1].defined()) grad_inputs[1].data<float>()[i] += ds[i] + dp[i] * a.data<float>()[i];
                  }
                });
}

// sum_i w_i x_i with fixed weights, to a one-element tensor.
Tensor dot(const Tensor& x, std::vector<float> w) {
  double total = 0;
  for (int64_t i = 0; i < x.numel(); i++) total += w[i] * x.data<float>()[i];
  return record("dot", {x}, Tensor::scalar(static_cast<float>(total)), [w](const Tensor& dy, std::vector<Tensor>& g) {
    for (int64_t i = 0; i < g[0].numel(); i++) g[0].data<float>()[i] += dy.item() * w[i];
  });
}

Tensor leaf(std::vector<float> values) {
  Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  t.requires_grad_();
  return t;
}

}  // namespace

TEST(AutogradOutputs, EachOutputCarriesTheNodeAndItsIndex) {
  Tensor a = leaf({1, 2}), b = leaf({3, 4});
  std::vector<Tensor> out = sum_and_product(a, b);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].grad_fn(), out[1].grad_fn());
  EXPECT_EQ(out[0].grad_fn_output(), 0);
  EXPECT_EQ(out[1].grad_fn_output(), 1);
  EXPECT_EQ(out[1].to_vector(), (std::vector<float>{3, 8}));
}

TEST(AutogradOutputs, BothOutputsUsed) {
  // L = sum(u*s) + sum(v*p): dL/da = u + v*b, dL/db = u + v*a.
  Tensor a = leaf({1, -2, 0.5f}), b = leaf({3, 4, -1});
  std::vector<float> u{1, 2, 3}, v{-1, 0.5f, 2};
  std::vector<Tensor> out = sum_and_product(a, b);
  Tensor loss = dot(out[0], u);
  backward(loss);  // through s only first: p's gradient slot is zero-filled
  EXPECT_EQ(a.grad().to_vector(), u);
  EXPECT_EQ(b.grad().to_vector(), u);

  a.set_grad(Tensor());
  b.set_grad(Tensor());
  out = sum_and_product(a, b);
  Tensor loss_p = dot(out[1], v);  // through p only: s's slot is zero-filled
  backward(loss_p);
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{-3, 2, -2}));  // v*b
  EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{-1, -1, 1}));  // v*a
}

TEST(AutogradOutputs, BothOutputsMeetAgainDownstream) {
  // L = sum(s * p) = sum((a+b)ab): dL/da = ab + (a+b)b, dL/db = ab + (a+b)a. The node's two
  // gradient slots are filled by one consumer, and the node runs once, after it.
  Tensor a = leaf({1, 2}), b = leaf({3, -1});
  std::vector<Tensor> out = sum_and_product(a, b);
  Tensor sp = sum_and_product(out[0], out[1])[1];
  backward(dot(sp, {1, 1}));
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{3 + 4 * 3, -2 + 1 * -1}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{3 + 4 * 1, -2 + 1 * 2}));
}

TEST(AutogradOutputs, RootMayBeAnyOutput) {
  Tensor a = leaf({2}), b = leaf({5});
  std::vector<Tensor> out = sum_and_product(a, b);
  backward(out[1]);  // d(ab)/da = b
  EXPECT_EQ(a.grad().item(), 5.0f);
  EXPECT_EQ(b.grad().item(), 2.0f);
}

TEST(AutogradOutputs, NoRecordingWithoutGradients) {
  Tensor a = Tensor::from_vector({1, 2}, {2}), b = Tensor::from_vector({3, 4}, {2});
  std::vector<Tensor> out = sum_and_product(a, b);
  EXPECT_FALSE(out[0].grad_fn());
  EXPECT_FALSE(out[1].grad_fn());
  Tensor c = leaf({1, 2});
  NoGrad no_grad;
  EXPECT_FALSE(sum_and_product(c, c)[0].grad_fn());
}

TEST(AutogradOutputs, GradcheckThroughBothOutputs) {
  Generator gen(71);
  Tensor a = Tensor::randn({7}, &gen).requires_grad_(), b = Tensor::randn({7}, &gen).requires_grad_();
  auto fn = [](const std::vector<Tensor>& in) {
    std::vector<Tensor> out = sum_and_product(in[0], in[1]);
    return sum_and_product(out[1], out[0])[0];  // s' = ab + (a+b)
  };
  EXPECT_EQ(gradcheck(fn, {a, b}), "");
}

// A Linear whose weight gradient is scaled wrong: the module check must name that parameter.
TEST(GradcheckModule, ChecksParametersAndInputs) {
  Generator gen(72);
  Linear layer(5, 3, /*bias=*/true, &gen);
  Tensor x = Tensor::randn({4, 5}, &gen).requires_grad_();
  auto fn = [&](const std::vector<Tensor>& in) { return layer.forward(in[0]); };
  EXPECT_EQ(gradcheck_module(layer, fn, {x}), "");
  EXPECT_EQ(gradcheck_module(layer, fn, {x}, {"bias"}), "");
  EXPECT_FALSE(layer.weight.grad().defined()) << "the check must leave no gradient behind";
  EXPECT_THROW(gradcheck_module(layer, fn, {x}, {"weights"}), Error);
}

TEST(GradcheckModule, NamesAWrongParameterGradient) {
  Generator gen(73);
  Linear layer(3, 2, /*bias=*/true, &gen);
  // y = x W^T + b, with a backward that doubles dW: correct for x and b, wrong for the weight.
  auto fn = [&](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    const Tensor& w = layer.weight;
    const Tensor& bias = layer.bias;
    Tensor y = Tensor::empty({x.size(0), 2});
    for (int64_t n = 0; n < x.size(0); n++)
      for (int64_t o = 0; o < 2; o++) {
        float acc = bias.data<float>()[o];
        for (int64_t i = 0; i < 3; i++) acc += x.data<float>()[n * 3 + i] * w.data<float>()[o * 3 + i];
        y.data<float>()[n * 2 + o] = acc;
      }
    return record("bad_linear", {x, w, bias}, y, [x, w](const Tensor& dy, std::vector<Tensor>& g) {
      for (int64_t n = 0; n < x.size(0); n++)
        for (int64_t o = 0; o < 2; o++) {
          float d = dy.data<float>()[n * 2 + o];
          g[2].data<float>()[o] += d;
          for (int64_t i = 0; i < 3; i++) {
            if (g[0].defined()) g[0].data<float>()[n * 3 + i] += d * w.data<float>()[o * 3 + i];
            g[1].data<float>()[o * 3 + i] += 2 * d * x.data<float>()[n * 3 + i];
          }
        }
    });
  };
  Tensor x = Tensor::randn({4, 3}, &gen).requires_grad_();
  std::string report = gradcheck_module(layer, fn, {x});
  EXPECT_NE(report.find("weight"), std::string::npos) << report;
  EXPECT_EQ(report.find("bias "), std::string::npos) << report;
  EXPECT_EQ(report.find("input 0"), std::string::npos) << report;
  EXPECT_EQ(gradcheck_module(layer, fn, {x}, {"bias"}), "");
}
