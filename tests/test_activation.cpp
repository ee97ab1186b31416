// Activations: the vectorized exp/tanh against double-precision libm, GELU/ReLU/tanh/sigmoid/SiLU
// values against the formulas evaluated in double, derivatives against the analytic ones and finite
// differences.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/activation.h"
#include "autograd/functions/view.h"
#include "autograd/gradcheck.h"
#include "nn/sigmoid.h"
#include "nn/silu.h"
#include "ops/cpu/fast_math.h"
#include "tensor/tensor.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)

// GELU's tanh approximation in double. 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)) exactly; the second
// form is used for u < 0, where 1 + tanh(u) in double would cancel to 0 long before the true value
// leaves the float range.
double gelu_ref(double x) {
  double u = kSqrt2OverPi * (x + 0.044715 * x * x * x);
  return u >= 0 ? 0.5 * x * (1.0 + std::tanh(u)) : x / (1.0 + std::exp(-2.0 * u));
}

// d/dx of the same formula: 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u'.
double gelu_grad_ref(double x) {
  double u = kSqrt2OverPi * (x + 0.044715 * x * x * x);
  double du = kSqrt2OverPi * (1.0 + 3.0 * 0.044715 * x * x);
  double t = std::tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
}

// sigmoid in double: 1 / (1 + exp(-x)) never overflows into inf / inf in double for |x| < 700.
double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// n evenly spaced floats in [lo, hi].
Tensor sweep(float lo, float hi, int64_t n) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(n - 1);
  return Tensor::from_vector(v, {n});
}

Tensor random_leaf(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return Tensor::randn(shape, &gen).requires_grad_(true);
}

}  // namespace

// Every test of Activation runs at each instruction-set level of the CPU kernels.
class Activation : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Activation);

// The brief for the fast functions: within ~1e-6 relative of the libm version. Cephes' polynomials
// reach ~2 ulp (1.2e-7); 1e-6 leaves room for the float rounding of the argument, not for a wrong
// coefficient (a typo in any of them costs more than 1e-5 somewhere on this grid).
TEST_P(Activation, FastExpMatchesLibm) {
  double worst = 0;
  for (int64_t i = 0; i <= 2000000; i++) {
    float x = -87.0f + 175.0f * static_cast<float>(i) / 2000000.0f;  // [-87, 88]
    double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(cpu::fast_exp(x) - want) / want);
  }
  EXPECT_LT(worst, 1e-6);
  EXPECT_EQ(cpu::fast_exp(-100.0f), 0.0f);
  EXPECT_EQ(cpu::fast_exp(0.0f), 1.0f);
  EXPECT_TRUE(std::isnan(cpu::fast_exp(std::nanf(""))));
}

TEST_P(Activation, FastTanhMatchesLibm) {
  double worst = 0;
  for (int64_t i = 0; i <= 2000000; i++) {
    float x = -12.0f + 24.0f * static_cast<float>(i) / 2000000.0f;
    double want = std::tanh(static_cast<double>(x));
    if (want == 0) continue;
    worst = std::max(worst, std::fabs(cpu::fast_tanh(x) - want) / std::fabs(want));
  }
  EXPECT_LT(worst, 1e-6);
  // Tiny arguments keep their relative precision (tanh x = x to float precision) and sign.
  for (float x : {1e-20f, -3e-8f, 1e-3f, -0.5f})
    EXPECT_NEAR(cpu::fast_tanh(x), std::tanh(static_cast<double>(x)), 2e-7 * std::fabs(x)) << x;
  EXPECT_EQ(cpu::fast_tanh(50.0f), 1.0f);
  EXPECT_EQ(cpu::fast_tanh(-50.0f), -1.0f);
  EXPECT_EQ(cpu::fast_tanh(INFINITY), 1.0f);
  EXPECT_TRUE(std::isnan(cpu::fast_tanh(std::nanf(""))));
}

// A NaN or infinity in the input must come out as the maths says, not as a finite number that
// hides a diverged run.
TEST_P(Activation, NonFiniteInputs) {
  std::vector<float> y = gelu(Tensor::from_vector({std::nanf(""), INFINITY, -INFINITY}, {3})).to_vector();
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], INFINITY);
  EXPECT_EQ(y[2], 0.0f);  // the limit; the formula itself would give -inf * 0
  EXPECT_TRUE(std::isnan(tanh(Tensor::from_vector({std::nanf("")}, {1})).item()));
  // Huge finite inputs: x^3 overflows, and gelu(x) must still be x or 0, its slope 1 or 0.
  Tensor big = Tensor::from_vector({3e38f, -3e38f, 1e13f, -1e13f}, {4});
  big.requires_grad_(true);
  Tensor out = gelu(big);
  EXPECT_EQ(out.to_vector(), (std::vector<float>{3e38f, 0.0f, 1e13f, 0.0f}));
  backward(out, Tensor::ones({4}));
  EXPECT_EQ(big.grad().to_vector(), (std::vector<float>{1.0f, 0.0f, 1.0f, 0.0f}));
}

// Forward over a grid of 200001 points (several threads), against two references:
// - the libm version: u rounded to float exactly as the kernel forms it, then the rest in double
//   with libm's exp. This isolates the fast exp and the final division: 1e-6 relative, as for the
//   fast functions (plus 1e-30 absolute for the far negative tail, x < -9.7, where the true value
//   is below 2e-34 and the kernel returns 0).
// - the formula in double throughout. For u < 0, gelu ~ x exp(2u) turns the float rounding of u
//   (a few ulp of |2u|) into that much relative error, so the tolerance grows with |2u|:
//   3e-7 |2u| on top of 1e-6. A float implementation cannot do better from a float u.
TEST_P(Activation, GeluMatchesFormulaInDouble) {
  Tensor x = sweep(-12.0f, 12.0f, 200001);
  std::vector<float> in = x.to_vector(), out = gelu(x).to_vector();
  for (size_t i = 0; i < in.size(); i++) {
    float xf = in[i];
    // The kernel's argument u in float, as it rounds it: at the levels with FMA the compiler may
    // fuse x + (0.044715 x^2) x into one fma, which rounds once less. In the tail (gelu(-8.6) ~
    // 1e-25) a one-ulp change of u moves the result by 2|u| ulps, so each rounding gets its own
    // libm reference, and the output must match one of them to 1e-6.
    float uf = 0.7978845608028654f * (xf + 0.044715f * xf * xf * xf);
    float uf_fused = 0.7978845608028654f * std::fmaf(0.044715f * xf * xf, xf, xf);
    double libm = xf / (1.0 + std::exp(-2.0 * static_cast<double>(uf)));
    double libm_fused = xf / (1.0 + std::exp(-2.0 * static_cast<double>(uf_fused)));
    if (std::fabs(out[i] - libm_fused) > 1e-6 * std::fabs(libm_fused) + 1e-30) {
      ASSERT_NEAR(out[i], libm, 1e-6 * std::fabs(libm) + 1e-30) << "x = " << xf << " (nor within 1e-6 of " << libm_fused
                                                                << ", u rounded after a fused multiply-add)";
    }
    double want = gelu_ref(xf);
    double conditioning = uf < 0 ? 3e-7 * std::fabs(2.0 * uf) : 0.0;
    ASSERT_NEAR(out[i], want, (1e-6 + conditioning) * std::fabs(want) + 1e-30) << "x = " << xf;
  }
}

TEST_P(Activation, GeluKnownValues) {
  std::vector<float> x = {0.0f, 1.0f, -1.0f, 0.5f, 3.0f, 10.0f, -10.0f};
  std::vector<float> y = gelu(Tensor::from_vector(x, {7})).to_vector();
  // gelu(0) = 0; gelu(1) = 0.5 (1 + tanh(sqrt(2/pi) * 1.044715)) = 0.8411920; gelu(-1) = 1 - 0.8411920
  // (gelu(x) - gelu(-x) = x); gelu(10) = 10 and gelu(-10) = 0 to float precision.
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_NEAR(y[1], 0.5 * (1.0 + std::tanh(kSqrt2OverPi * 1.044715)), 1e-7);
  EXPECT_NEAR(y[1] - y[2], 1.0, 2e-7);
  for (size_t i = 3; i < x.size(); i++) EXPECT_NEAR(y[i], gelu_ref(x[i]), 1e-6 * std::fabs(gelu_ref(x[i])) + 1e-30);
  EXPECT_EQ(y[5], 10.0f);
  EXPECT_NEAR(y[6], 0.0f, 1e-20);  // gelu(-10) ~ -1e-36 by the formula
}

TEST_P(Activation, GeluBackwardMatchesDerivativeInDouble) {
  Tensor x = sweep(-9.0f, 9.0f, 100001);
  x.requires_grad_(true);
  Generator gen(21);
  Tensor w = Tensor::randn({100001}, &gen);
  backward(gelu(x), w);
  std::vector<float> in = x.to_vector(), g = x.grad().to_vector(), vw = w.to_vector();
  // A few float roundings of terms of size <= 1.13 |w|: 1e-6 absolute per unit of w.
  for (size_t i = 0; i < in.size(); i++)
    ASSERT_NEAR(g[i], vw[i] * gelu_grad_ref(in[i]), 1e-6 * (1 + std::fabs(vw[i]))) << "x = " << in[i];
}

TEST_P(Activation, ReluAndTanhValues) {
  Tensor x = sweep(-6.0f, 6.0f, 100001);  // includes 0 exactly (the middle point)
  std::vector<float> in = x.to_vector(), r = relu(x).to_vector(), t = tanh(x).to_vector();
  for (size_t i = 0; i < in.size(); i++) {
    ASSERT_EQ(r[i], in[i] > 0 ? in[i] : 0.0f);
    double want = std::tanh(static_cast<double>(in[i]));
    ASSERT_NEAR(t[i], want, 1e-6 * std::fabs(want)) << "x = " << in[i];
  }
}

TEST_P(Activation, ReluAndTanhBackward) {
  Tensor x = sweep(-4.0f, 4.0f, 50001);
  x.requires_grad_(true);
  Generator gen(22);
  Tensor w = Tensor::randn({50001}, &gen);
  backward(relu(x), w);
  std::vector<float> in = x.to_vector(), g = x.grad().to_vector(), vw = w.to_vector();
  for (size_t i = 0; i < in.size(); i++) ASSERT_EQ(g[i], in[i] > 0 ? vw[i] : 0.0f);  // exact: a copy or 0
  Tensor z = sweep(-4.0f, 4.0f, 50001);
  z.requires_grad_(true);
  backward(tanh(z), w);
  std::vector<float> zin = z.to_vector(), zg = z.grad().to_vector();
  // 1 - tanh^2 from the float output: the output's 1e-7 relative error moves it by ~2e-7.
  for (size_t i = 0; i < zin.size(); i++) {
    double t = std::tanh(static_cast<double>(zin[i]));
    ASSERT_NEAR(zg[i], vw[i] * (1 - t * t), 3e-7 * (1 + std::fabs(vw[i]))) << "x = " << zin[i];
  }
}

TEST_P(Activation, GradCheckOddShapes) {
  std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> fns = {
      {"gelu", [](const Tensor& t) { return gelu(t); }},
      {"relu", [](const Tensor& t) { return relu(t); }},
      {"tanh", [](const Tensor& t) { return tanh(t); }},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }},
      {"silu", [](const Tensor& t) { return silu(t); }},
  };
  for (const Shape& shape : {Shape{3, 7}, Shape{5, 1, 9}, Shape{13}, Shape{}}) {
    Tensor x = random_leaf(shape, 21);
    // ReLU has a kink at 0: keep inputs at least 2 eps away from it so the central difference never
    // straddles it.
    std::vector<float> v = x.to_vector();
    for (float& e : v) if (std::fabs(e) < 0.05f) e = e < 0 ? -0.05f : 0.05f;
    x = Tensor::from_vector(v, shape).requires_grad_(true);
    for (auto& [name, fn] : fns) {
      auto f = fn;
      EXPECT_EQ(gradcheck([f](const std::vector<Tensor>& in) { return f(in[0]); }, {x}), "") << name << shape_str(shape);
    }
  }
}

TEST_P(Activation, NonContiguousInputAndWrongDtype) {
  Tensor base = random_leaf({4, 3}, 22);
  Tensor xt = base.transpose(0, 1);
  std::vector<float> got = gelu(xt).to_vector(), in = xt.contiguous().to_vector();
  for (size_t i = 0; i < in.size(); i++) EXPECT_NEAR(got[i], gelu_ref(in[i]), 1e-6 * std::fabs(gelu_ref(in[i])) + 1e-30);
  try {
    relu(Tensor::from_ints({1, -2}, {2}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("relu"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("i32"), std::string::npos) << e.what();
  }
}

// The subnormal-reaching exp that sigmoid's tails use. Where the result is a normal float, as
// fast_exp (1e-6 relative); below 2^-126 the last multiply rounds into the subnormals, whose spacing
// is 2^-149: one such step on top of the relative error.
TEST_P(Activation, FastExpNonpositiveReachesTheSubnormals) {
  for (int64_t i = 0; i <= 1000000; i++) {
    float x = -104.0f * static_cast<float>(i) / 1000000.0f;  // [-104, 0]
    double want = std::exp(static_cast<double>(x));
    ASSERT_NEAR(cpu::fast_exp_nonpositive(x), want, 1e-6 * want + std::ldexp(1.0, -149)) << "x = " << x;
  }
  EXPECT_EQ(cpu::fast_exp_nonpositive(0.0f), 1.0f);
  EXPECT_GT(cpu::fast_exp_nonpositive(-100.0f), 0.0f);  // 3.7e-44, where fast_exp gives 0
  EXPECT_EQ(cpu::fast_exp_nonpositive(-105.0f), 0.0f);
  EXPECT_EQ(cpu::fast_exp_nonpositive(-INFINITY), 0.0f);
  EXPECT_TRUE(std::isnan(cpu::fast_exp_nonpositive(std::nanf(""))));
  // On [-87.3, 0] it is fast_exp_in_range, bit for bit.
  for (float x : {-87.0f, -20.5f, -1.0f, -1e-3f}) EXPECT_EQ(cpu::fast_exp_nonpositive(x), cpu::fast_exp_in_range(x));
}

// sigmoid and SiLU over [-30, 30] (several threads) against double. Both are formed from e = exp(-|x|)
// (~2 ulp) with three or four more roundings, and x is exact, so 1e-6 relative holds everywhere,
// including the tail where sigmoid(x) ~ e^x is tiny and SiLU's sign changes nothing.
TEST_P(Activation, SigmoidAndSiluMatchDouble) {
  Tensor x = sweep(-30.0f, 30.0f, 200001);
  std::vector<float> in = x.to_vector(), s = sigmoid(x).to_vector(), si = silu(x).to_vector();
  for (size_t i = 0; i < in.size(); i++) {
    double want = sigmoid_ref(in[i]);
    ASSERT_NEAR(s[i], want, 1e-6 * want) << "x = " << in[i];
    ASSERT_NEAR(si[i], in[i] * want, 1e-6 * std::fabs(in[i] * want)) << "x = " << in[i];
  }
  // The far negative tail, where sigmoid(x) is subnormal below -87.3: one subnormal step more.
  Tensor tail = sweep(-103.0f, -80.0f, 2001);
  std::vector<float> t_in = tail.to_vector(), t_out = sigmoid(tail).to_vector();
  for (size_t i = 0; i < t_in.size(); i++) {
    double want = sigmoid_ref(t_in[i]);
    ASSERT_NEAR(t_out[i], want, 1e-6 * want + std::ldexp(1.0, -149)) << "x = " << t_in[i];
    ASSERT_GT(t_out[i], 0.0f) << "x = " << t_in[i];
  }
}

// The ends: no NaN from inf / inf or inf * 0, and the limits where the maths has them.
TEST_P(Activation, SigmoidAndSiluExtremes) {
  Tensor x = Tensor::from_vector({-100.0f, 100.0f, -INFINITY, INFINITY, 3e38f, -3e38f, 0.0f}, {7});
  x.requires_grad_(true);
  std::vector<float> s = sigmoid(x).to_vector();
  EXPECT_GT(s[0], 0.0f);  // 3.7e-44: a tiny positive number
  EXPECT_NEAR(s[0], std::exp(-100.0), 2 * std::ldexp(1.0, -149));
  EXPECT_EQ(s[1], 1.0f);
  EXPECT_EQ(s[2], 0.0f);
  EXPECT_EQ(s[3], 1.0f);
  EXPECT_EQ(s[4], 1.0f);
  EXPECT_EQ(s[5], 0.0f);
  EXPECT_EQ(s[6], 0.5f);
  std::vector<float> si = silu(x).to_vector();
  EXPECT_LT(si[0], 0.0f);  // -100 * 3.7e-44
  EXPECT_NEAR(si[0], -100.0 * std::exp(-100.0), 100 * std::ldexp(1.0, -149));
  EXPECT_EQ(si[1], 100.0f);
  EXPECT_EQ(si[2], 0.0f);
  EXPECT_EQ(si[3], INFINITY);
  EXPECT_EQ(si[4], 3e38f);
  EXPECT_EQ(si[5], 0.0f);
  EXPECT_EQ(si[6], 0.0f);
  backward(sigmoid(x), Tensor::ones({7}));
  std::vector<float> g = x.grad().to_vector();
  EXPECT_NEAR(g[0], std::exp(-100.0), 2 * std::ldexp(1.0, -149));  // e^-100, not 0 or NaN
  EXPECT_NEAR(g[1], std::exp(-100.0), 2 * std::ldexp(1.0, -149));
  EXPECT_EQ(g[2], 0.0f);
  EXPECT_EQ(g[3], 0.0f);
  EXPECT_EQ(g[6], 0.25f);
  x.set_grad(Tensor());
  backward(silu(x), Tensor::ones({7}));
  g = x.grad().to_vector();
  EXPECT_EQ(g[1], 1.0f);
  EXPECT_EQ(g[2], 0.0f);  // the limits at -inf and +inf
  EXPECT_EQ(g[3], 1.0f);
  EXPECT_EQ(g[4], 1.0f);
  EXPECT_EQ(g[5], 0.0f);
  EXPECT_EQ(g[6], 0.5f);
  for (float v : g) EXPECT_FALSE(std::isnan(v));
  EXPECT_TRUE(std::isnan(sigmoid(Tensor::from_vector({std::nanf("")}, {1})).item()));
  EXPECT_TRUE(std::isnan(silu(Tensor::from_vector({std::nanf("")}, {1})).item()));
}

// The derivatives against double, with random output gradients. sigmoid' = s (1 - s) is computed
// as s * sigmoid(-x), a product of two values each within ~5 ulp: 1e-6 RELATIVE everywhere, also
// for x > 17 where 1 - s rounds to 0 in float (an output-based backward would give 0 there).
// silu' = s (1 + x c) cancels near its zero (x = -1.28), so its error is relative to the size of
// the terms, s (1 + |x c|): a few roundings of those, 1e-6 of them.
TEST_P(Activation, SigmoidAndSiluBackwardMatchDerivativeInDouble) {
  Generator gen(31);
  Tensor w = Tensor::randn({100001}, &gen);
  std::vector<float> vw = w.to_vector();
  Tensor x = sweep(-25.0f, 25.0f, 100001);
  x.requires_grad_(true);
  backward(sigmoid(x), w);
  std::vector<float> in = x.to_vector(), g = x.grad().to_vector();
  for (size_t i = 0; i < in.size(); i++) {
    double s = sigmoid_ref(in[i]), c = sigmoid_ref(-static_cast<double>(in[i]));
    double want = vw[i] * s * c;
    ASSERT_NEAR(g[i], want, 1e-6 * std::fabs(want)) << "x = " << in[i];
  }
  Tensor z = sweep(-25.0f, 25.0f, 100001);
  z.requires_grad_(true);
  backward(silu(z), w);
  std::vector<float> zg = z.grad().to_vector();
  for (size_t i = 0; i < in.size(); i++) {
    double xi = in[i], s = sigmoid_ref(xi), c = sigmoid_ref(-xi);
    double want = vw[i] * s * (1 + xi * c), size = std::fabs(vw[i]) * s * (1 + std::fabs(xi * c));
    ASSERT_NEAR(zg[i], want, 1e-6 * size) << "x = " << xi;
  }
}

TEST_P(Activation, SigmoidAndSiluModulesAndViews) {
  Generator gen(32);
  Tensor base = Tensor::randn({4, 5}, &gen);
  Tensor xt = base.transpose(0, 1);  // not contiguous
  std::vector<float> in = xt.contiguous().to_vector();
  std::vector<float> s = Sigmoid().forward(xt).to_vector(), si = SiLU().forward(xt).to_vector();
  for (size_t i = 0; i < in.size(); i++) {
    EXPECT_NEAR(s[i], sigmoid_ref(in[i]), 1e-6 * sigmoid_ref(in[i]));
    EXPECT_NEAR(si[i], in[i] * sigmoid_ref(in[i]), 1e-6 * std::fabs(in[i] * sigmoid_ref(in[i])));
  }
  Tensor leaf = base.clone().requires_grad_(true);
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& v) { return silu(transpose(v[0], 0, 1)); }, {leaf}), "");
  EXPECT_ERROR_MENTIONS(sigmoid(Tensor::from_ints({1, 2}, {2})), "sigmoid", "i32");
  EXPECT_ERROR_MENTIONS(silu(Tensor::from_ints({1, 2}, {2})), "silu", "i32");
}
