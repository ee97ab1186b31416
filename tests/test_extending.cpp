// The two extension paths README.md shows, compiled and checked here so the README cannot drift:
// a layer composed from existing ops, and a differentiable function with its own kernels.
#include <gtest/gtest.h>

#include <cmath>

#include "tilegrad.h"

using namespace tg;

// The examples live in their own namespace: tilegrad.h may well gain a tg::SwiGLU or a
// tg::softplus of its own, and an unqualified name would then be ambiguous under `using namespace tg`.
namespace readme_example {

// README "Composed from existing ops": x -> (silu(x W1) * (x W3)) W2.
struct SwiGLU : Module {
  std::shared_ptr<Linear> w1, w2, w3;
  SwiGLU(int64_t dim, int64_t hidden) {
    w1 = register_module("w1", std::make_shared<Linear>(dim, hidden, false));
    w3 = register_module("w3", std::make_shared<Linear>(dim, hidden, false));
    w2 = register_module("w2", std::make_shared<Linear>(hidden, dim, false));
  }
  Tensor forward(const Tensor& x) {
    Tensor a = w1->forward(x);
    Tensor silu = a * (0.5f * (tg::tanh(0.5f * a) + 1.0f));  // sigmoid(a) = (tanh(a/2) + 1) / 2
    return w2->forward(silu * w3->forward(x));
  }
};

// README "With its own kernels", with the kernels inlined: softplus(x) = log(1 + e^x), whose
// derivative is sigmoid(x).
Tensor softplus(const Tensor& x) {
  Tensor xc = x.contiguous(), y = Tensor::empty_like(xc);
  const float* in = xc.data<float>();
  float* out = y.data<float>();
  for (int64_t i = 0; i < xc.numel(); i++) out[i] = std::log1p(std::exp(in[i]));
  return record("softplus", {x}, y, [xc](const Tensor& dy, std::vector<Tensor>& g) {
    if (!g[0].defined()) return;
    const float* in = xc.data<float>();
    const float* d = dy.data<float>();
    float* dx = g[0].data<float>();
    for (int64_t i = 0; i < xc.numel(); i++) dx[i] += d[i] / (1.0f + std::exp(-in[i]));
  });
}

}  // namespace readme_example

TEST(Extending, ComposedLayerMatchesItsFormulaAndGradchecks) {
  manual_seed(3);
  readme_example::SwiGLU layer(5, 7);
  Generator gen(4);
  Tensor x = Tensor::randn({3, 5}, &gen);
  // Forward against the formula computed here in double from the weights.
  auto w1 = layer.w1->weight.to_vector(), w2 = layer.w2->weight.to_vector(), w3 = layer.w3->weight.to_vector();
  auto xv = x.to_vector(), y = layer.forward(x).to_vector();
  for (int r = 0; r < 3; r++)
    for (int o = 0; o < 5; o++) {
      double acc = 0;
      for (int h = 0; h < 7; h++) {
        double a = 0, b = 0;
        for (int i = 0; i < 5; i++) a += w1[h * 5 + i] * xv[r * 5 + i], b += w3[h * 5 + i] * xv[r * 5 + i];
        acc += w2[o * 7 + h] * (a / (1 + std::exp(-a))) * b;
      }
      EXPECT_NEAR(y[r * 5 + o], acc, 1e-5 * (1 + std::fabs(acc)));
    }
  x.requires_grad_();
  EXPECT_EQ(gradcheck([&](const std::vector<Tensor>& in) { return layer.forward(in[0]); }, {x}), "");
  EXPECT_EQ(layer.named_parameters().size(), 3u);
}

TEST(Extending, OwnKernelFunctionGradchecksThroughAView) {
  Generator gen(5);
  Tensor x = Tensor::randn({4, 3}, &gen);
  x.requires_grad_();
  // Through a transposed view, so the graph must link through `record`'s original input.
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return readme_example::softplus(transpose(in[0], 0, 1)); }, {x}), "");
}
