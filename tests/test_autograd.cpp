// The autograd engine itself, exercised through differentiable functions defined here with
// `record` (the same way a user adds one): ordering, accumulation, NoGrad, hooks, freed graphs,
// and the differentiable views.
#include <gtest/gtest.h>

#include "autograd/engine.h"
#include "autograd/functions/view.h"
#include "autograd/gradcheck.h"

using namespace tg;

namespace {

// y = x * x, elementwise. Plain loops: these tests are about the engine, not kernels.
// The pattern for any input that may be a view: the kernel reads a contiguous copy, but `record`
// gets the original tensor, because the original is what links the graph to its producer.
Tensor square(const Tensor& x) {
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty_like(xc);
  const float* in = xc.data<float>();
  float* out = y.data<float>();
  for (int64_t i = 0; i < xc.numel(); i++) out[i] = in[i] * in[i];
  return record("square", {x}, y, [xc](const Tensor& dy, std::vector<Tensor>& g) {
    const float* in = xc.data<float>();
    const float* d = dy.data<float>();
    float* dx = g[0].data<float>();
    for (int64_t i = 0; i < xc.numel(); i++) dx[i] += 2 * in[i] * d[i];
  });
}

// z = a * b, same shapes.
Tensor times(const Tensor& a, const Tensor& b) {
  Tensor y = Tensor::empty_like(a);
  for (int64_t i = 0; i < a.numel(); i++) y.data<float>()[i] = a.data<float>()[i] * b.data<float>()[i];
  return record("times", {a, b}, y, [a, b](const Tensor& dy, std::vector<Tensor>& g) {
    for (int64_t i = 0; i < a.numel(); i++) {
      if (g[0].defined()) g[0].data<float>()[i] += dy.data<float>()[i] * b.data<float>()[i];
      if (g[1].defined()) g[1].data<float>()[i] += dy.data<float>()[i] * a.data<float>()[i];
    }
  });
}

// Sum of all elements to a one-element tensor.
Tensor total(const Tensor& x) {
  float s = 0;
  for (float v : x.to_vector()) s += v;
  return record("total", {x}, Tensor::scalar(s), [](const Tensor& dy, std::vector<Tensor>& g) {
    float d = dy.item();
    for (int64_t i = 0; i < g[0].numel(); i++) g[0].data<float>()[i] += d;
  });
}

Tensor leaf(std::vector<float> values) {
  Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  t.requires_grad_();
  return t;
}

}  // namespace

TEST(Autograd, ChainRule) {
  Tensor x = leaf({1, -2, 3});
  backward(total(square(x)));  // d/dx sum(x^2) = 2x
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{2, -4, 6}));
}

TEST(Autograd, SharedSubexpressionGetsBothContributions) {
  // L = sum(s * s) with s = x^2 used twice by `times`: dL/dx = 2 s * 2x = 4 x^3.
  Tensor x = leaf({1, 2, -1});
  Tensor s = square(x);
  backward(total(times(s, s)));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{4, 32, -4}));
}

TEST(Autograd, DiamondRunsEachNodeOnceAfterAllConsumers) {
  // a = x^2; b = a * x; c = a * a; L = sum(b) + sum(c) computed as sum(b * 1 ...): use times twice.
  Tensor x = leaf({2, 3});
  Tensor a = square(x);                  // x^2
  Tensor b = times(a, x);                // x^3
  Tensor c = times(a, a);                // x^4
  backward(total(times(b, c)));          // x^7 -> 7 x^6
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{7 * 64, 7 * 729}));
}

TEST(Autograd, LeafGradsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1, 2});
  backward(total(square(x)));
  backward(total(square(x)));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{4, 8}));
}

TEST(Autograd, NoGradRecordsNothing) {
  Tensor x = leaf({1, 2});
  {
    NoGrad no_grad;
    EXPECT_FALSE(grad_enabled());
    Tensor y = square(x);
    EXPECT_FALSE(y.grad_fn());
    EXPECT_THROW(backward(total(y)), Error);
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_TRUE(square(x).grad_fn());
}

TEST(Autograd, InputsWithoutGradGetNoBuffer) {
  Tensor x = leaf({1, 2});
  Tensor c = Tensor::from_vector({5, 7}, {2});  // a constant
  backward(total(times(x, c)));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{5, 7}));
  EXPECT_FALSE(c.grad().defined());
}

TEST(Autograd, BackwardTwiceThroughFreedGraphThrowsClearly) {
  Tensor x = leaf({1, 2});
  Tensor loss = total(square(x));
  backward(loss);
  try {
    backward(loss);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
  }
}

TEST(Autograd, RetainGraphAllowsSecondBackward) {
  Tensor x = leaf({3});
  Tensor loss = total(square(x));
  backward(loss, Tensor(), /*retain_graph=*/true);
  backward(loss);
  EXPECT_EQ(x.grad().item(), 12.0f);
}

TEST(Autograd, HookFiresOnceWhenLeafGradIsFinal) {
  // x feeds three ops; the hook must see the complete gradient, once.
  Tensor x = leaf({1, 2});
  std::vector<std::vector<float>> seen;
  add_grad_hook(x, [&](const Tensor& g) { seen.push_back(g.to_vector()); });
  Tensor y = times(times(x, x), x);  // x^3
  backward(total(y));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (std::vector<float>{3, 12}));
}

TEST(Autograd, HooksFireInReverseOrderOfUse) {
  // Parameters used last in the forward get their gradient first: the order data parallel relies
  // on to start communication early.
  Tensor a = leaf({1}), b = leaf({2});
  std::vector<char> order;
  add_grad_hook(a, [&](const Tensor&) { order.push_back('a'); });
  add_grad_hook(b, [&](const Tensor&) { order.push_back('b'); });
  backward(total(times(square(a), b)));
  EXPECT_EQ(order, (std::vector<char>{'b', 'a'}));
}

TEST(Autograd, ExplicitGradOutputAndShapeChecks) {
  Tensor x = leaf({1, 2, 3});
  Tensor y = square(x);
  EXPECT_THROW(backward(y), Error);  // not a scalar and no grad_output
  EXPECT_THROW(backward(y, Tensor::ones({2})), Error);
  backward(y, Tensor::from_vector({1, 0, 2}, {3}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{2, 0, 12}));
}

TEST(Autograd, RecordLeavesCallerTensorUntouched) {
  Tensor x = leaf({1});
  Tensor raw = Tensor::scalar(4);
  Tensor y = record("noop", {x}, raw, [](const Tensor&, std::vector<Tensor>&) {});
  EXPECT_TRUE(y.grad_fn());
  EXPECT_FALSE(raw.grad_fn());
}

TEST(Autograd, RequiresGradOnlyForFloats) {
  Tensor ids = Tensor::from_ints({1, 2}, {2});
  EXPECT_THROW(ids.requires_grad_(), Error);
}

// Differentiable views: checked against finite differences through a non-linear function so
// that each element's gradient differs.
TEST(Autograd, ViewGradcheck) {
  Generator gen(1);
  Tensor x = Tensor::randn({3, 4, 5}, &gen);
  x.requires_grad_();
  auto check = [&](std::function<Tensor(const Tensor&)> view) {
    return gradcheck([&](const std::vector<Tensor>& in) { return square(view(in[0])); }, {x});
  };
  EXPECT_EQ(check([](const Tensor& t) { return reshape(t, {5, -1}); }), "");
  EXPECT_EQ(check([](const Tensor& t) { return transpose(t, 0, 2); }), "");
  EXPECT_EQ(check([](const Tensor& t) { return permute(t, {1, 2, 0}); }), "");
  EXPECT_EQ(check([](const Tensor& t) { return slice(t, 1, 1, 4, 2); }), "");
  EXPECT_EQ(check([](const Tensor& t) { return contiguous(transpose(t, 1, 2)); }), "");
  EXPECT_EQ(check([](const Tensor& t) { return reshape(transpose(t, 0, 1), {-1}); }), "");
}

TEST(Autograd, GradcheckCatchesAWrongBackward) {
  // A deliberately wrong backward (gradient x instead of 2x) must be reported.
  auto wrong_square = [](const std::vector<Tensor>& in) {
    Tensor x = in[0];
    Tensor y = Tensor::empty_like(x);
    for (int64_t i = 0; i < x.numel(); i++) y.data<float>()[i] = x.data<float>()[i] * x.data<float>()[i];
    return record("wrong_square", {x}, y, [x](const Tensor& dy, std::vector<Tensor>& g) {
      for (int64_t i = 0; i < x.numel(); i++) g[0].data<float>()[i] += x.data<float>()[i] * dy.data<float>()[i];
    });
  };
  Tensor x = Tensor::from_vector({0.5f, 1.5f, -2}, {3});
  x.requires_grad_();
  EXPECT_NE(gradcheck(wrong_square, {x}), "");
}
