// Dropout: the kept fraction, the scaling, reproducibility from a seed, eval mode, the backward's
// mask, and bad probabilities.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/dropout.h"
#include "autograd/gradcheck.h"
#include "tensor/tensor.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {
// Inputs with no zeros, so a zero in the output always means "dropped".
Tensor nonzero_input(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  std::vector<float> v = Tensor::rand(shape, &gen).to_vector();
  for (float& e : v) e += 0.5f;
  return Tensor::from_vector(v, shape).requires_grad_(true);
}
}  // namespace

// Every test of Dropout runs at each instruction-set level of the CPU kernels.
class Dropout : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Dropout);

TEST_P(Dropout, KeptFractionAndScaling) {
  const int64_t n = 1000003;  // odd, and large enough to run on every thread
  for (float p : {0.1f, 0.5f, 0.9f}) {
    Tensor x = nonzero_input({n}, 1);
    Generator gen(7);
    std::vector<float> in = x.to_vector(), out = dropout(x, p, true, &gen).to_vector();
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
      if (out[i] == 0.0f) continue;
      kept++;
      ASSERT_EQ(out[i], in[i] * (1.0f / (1.0f - p))) << i;  // the kernel's exact expression
    }
    // The kept count is Binomial(n, 1 - p): within 6 standard deviations (sqrt(n p (1 - p)) <= 500)
    // with probability 1 - 2e-9. A mask that ignored p, or kept p instead of 1 - p, is thousands away.
    double expected = n * (1.0 - p), sigma = std::sqrt(n * p * (1.0 - p));
    EXPECT_NEAR(static_cast<double>(kept), expected, 6 * sigma) << "p = " << p;
  }
}

TEST_P(Dropout, MaskHasNoVisibleStructure) {
  // Neighbouring elements are independent: P(both kept) = (1 - p)^2 within 6 sigma.
  const int64_t n = 400001;
  Generator gen(3);
  std::vector<float> out = dropout(nonzero_input({n}, 2), 0.5f, true, &gen).to_vector();
  int64_t both = 0;
  for (int64_t i = 0; i + 1 < n; i++) both += out[i] != 0 && out[i + 1] != 0;
  EXPECT_NEAR(static_cast<double>(both), 0.25 * (n - 1), 6 * std::sqrt(0.25 * 0.75 * (n - 1)));
}

TEST_P(Dropout, SameSeedSameMaskDifferentSeedDifferentMask) {
  Tensor x = nonzero_input({3, 7, 5}, 4);
  Generator a(42), b(42), c(43);
  std::vector<float> ya = dropout(x, 0.3f, true, &a).to_vector();
  EXPECT_EQ(ya, dropout(x, 0.3f, true, &b).to_vector());
  EXPECT_NE(ya, dropout(x, 0.3f, true, &c).to_vector());
  // The generator advances: a second call with the same generator draws a new mask.
  EXPECT_NE(ya, dropout(x, 0.3f, true, &a).to_vector());
  // The default generator is used when none is given, and manual_seed reproduces it.
  manual_seed(5);
  std::vector<float> d1 = dropout(x, 0.3f, true).to_vector();
  manual_seed(5);
  EXPECT_EQ(d1, dropout(x, 0.3f, true).to_vector());
}

TEST_P(Dropout, EvalModeAndZeroProbabilityAreIdentity) {
  Tensor x = nonzero_input({5, 1, 9}, 5);
  EXPECT_EQ(dropout(x, 0.5f, false).to_vector(), x.to_vector());
  EXPECT_EQ(dropout(x, 0.0f, true).to_vector(), x.to_vector());
}

TEST_P(Dropout, BackwardUsesTheForwardMask) {
  const int64_t n = 100003;
  const float p = 0.25f;
  Tensor x = nonzero_input({n}, 6);
  Generator gen(9);
  Tensor w = Tensor::randn({n}, &gen);
  Tensor y = dropout(x, p, true, &gen);
  backward(y, w);
  std::vector<float> out = y.to_vector(), g = x.grad().to_vector(), vw = w.to_vector();
  for (int64_t i = 0; i < n; i++) ASSERT_EQ(g[i], out[i] != 0.0f ? vw[i] * (1.0f / (1.0f - p)) : 0.0f) << i;
}

TEST_P(Dropout, GradCheck) {
  // A fresh generator with one seed inside the function: every evaluation uses the same mask.
  for (const Shape& shape : {Shape{3, 7}, Shape{5, 1, 9}, Shape{13}}) {
    auto fn = [](const std::vector<Tensor>& in) {
      Generator gen(11);
      return dropout(in[0], 0.4f, true, &gen);
    };
    EXPECT_EQ(gradcheck(fn, {nonzero_input(shape, 7)}), "") << shape_str(shape);
  }
}

TEST_P(Dropout, BadProbabilityThrowsNamingValue) {
  Tensor x = Tensor::ones({4});
  for (float p : {1.5f, 1.0f, -0.1f, std::nanf("")}) {
    try {
      dropout(x, p, true);
      FAIL() << "expected an error for p = " << p;
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("dropout"), std::string::npos) << msg;
      EXPECT_NE(msg.find("p = "), std::string::npos) << msg;
    }
  }
  try {
    dropout(x, 1.5f, false);  // checked in eval mode too: a bad config should fail at once
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1.5"), std::string::npos) << e.what();
  }
}
