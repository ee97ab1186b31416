// Softmax and log-softmax over the last dimension: values against a double reference, rows summing
// to 1, stability for huge logits, gradients.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/softmax.h"
#include "autograd/gradcheck.h"
#include "tensor/tensor.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

Tensor random_leaf(const Shape& shape, uint64_t seed, float stddev = 1.0f) {
  Generator gen(seed);
  Tensor t = Tensor::randn(shape, &gen);
  std::vector<float> v = t.to_vector();
  for (float& e : v) e *= stddev;
  return Tensor::from_vector(v, shape).requires_grad_(true);
}

// log_softmax of every row in double, the max subtracted first.
std::vector<double> log_softmax_ref(const std::vector<float>& x, int64_t C) {
  std::vector<double> out(x.size());
  for (size_t r = 0; r < x.size() / C; r++) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; c++) m = std::max(m, static_cast<double>(x[r * C + c]));
    for (int64_t c = 0; c < C; c++) s += std::exp(x[r * C + c] - m);
    for (int64_t c = 0; c < C; c++) out[r * C + c] = x[r * C + c] - m - std::log(s);
  }
  return out;
}

}  // namespace

// Every test of Softmax runs at each instruction-set level of the CPU kernels.
class Softmax : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Softmax);

// Shapes: odd sizes, one row, a row the size of GPT-2's vocabulary (many summation blocks), and one
// large enough to split rows across threads.
TEST_P(Softmax, MatchesDoubleReferenceAndRowsSumToOne) {
  for (const Shape& shape : {Shape{3, 7}, Shape{5, 1, 9}, Shape{13}, Shape{2, 50257}, Shape{517, 129}}) {
    Tensor x = random_leaf(shape, 1, 3.0f);
    int64_t C = shape.back();
    std::vector<double> lref = log_softmax_ref(x.to_vector(), C);
    std::vector<float> y = softmax(x).to_vector(), ly = log_softmax(x).to_vector();
    for (size_t r = 0; r < y.size() / C; r++) {
      double row = 0;
      for (int64_t c = 0; c < C; c++) {
        size_t i = r * C + c;
        // exp's ~2 ulp plus the float normalisation: 1e-6 relative, plus the float rounding of
        // x - max (half an ulp of |x - max| ~ |log p|), which exp turns into relative error.
        // log_softmax: 1e-6 relative to its size (|log p| reaches ~40 for 50k classes at stddev 3).
        double p = std::exp(lref[i]);
        ASSERT_NEAR(y[i], p, (1e-6 + 1.2e-7 * std::fabs(lref[i])) * p + 1e-30) << shape_str(shape) << " " << i;
        ASSERT_NEAR(ly[i], lref[i], 1e-6 * (1 + std::fabs(lref[i]))) << shape_str(shape) << " " << i;
        row += y[i];
      }
      // C roundings of ~1e-7 relative each, in sum over the row's probabilities: 1e-5 total.
      ASSERT_NEAR(row, 1.0, 1e-5) << shape_str(shape) << " row " << r;
    }
  }
}

TEST_P(Softmax, HugeLogitsStayFinite) {
  Tensor x = Tensor::from_vector({1e4f, 1e4f - 1.0f, -1e4f, 0.0f, -1e4f, -1e4f, -1e4f, -1e4f}, {2, 4});
  std::vector<float> y = softmax(x).to_vector(), ly = log_softmax(x).to_vector();
  for (float v : y) EXPECT_TRUE(std::isfinite(v));
  for (float v : ly) EXPECT_TRUE(std::isfinite(v));
  // Row 0: softmax(0, -1, -2e4, -1e4) = (1, e^-1, 0, 0) / (1 + e^-1).
  double z = 1 + std::exp(-1.0);
  EXPECT_NEAR(y[0], 1 / z, 1e-7);
  EXPECT_NEAR(y[1], std::exp(-1.0) / z, 1e-7);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_NEAR(ly[1], -1 - std::log(z), 1e-6);
  EXPECT_NEAR(ly[2], -2e4 - std::log(z), 1e-2);  // float spacing at 2e4 is 2e-3
  // Row 1: four equal logits.
  for (int c = 4; c < 8; c++) EXPECT_NEAR(y[c], 0.25, 1e-7);
}

TEST_P(Softmax, GradCheck) {
  for (const Shape& shape : {Shape{3, 7}, Shape{5, 1, 9}, Shape{13}}) {
    Tensor x = random_leaf(shape, 2);
    EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return softmax(in[0]); }, {x}), "") << shape_str(shape);
    EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return log_softmax(in[0]); }, {x}), "") << shape_str(shape);
  }
}

TEST_P(Softmax, BackwardMatchesFormulaAtThreadedSize) {
  const int64_t rows = 301, C = 129;
  Tensor x = random_leaf({rows, C}, 3), z = random_leaf({rows, C}, 3);
  Generator gen(4);
  Tensor w = Tensor::randn({rows, C}, &gen);
  backward(softmax(x), w);
  backward(log_softmax(z), w);
  std::vector<double> lref = log_softmax_ref(x.to_vector(), C);
  std::vector<float> vw = w.to_vector(), gx = x.grad().to_vector(), gz = z.grad().to_vector();
  for (int64_t r = 0; r < rows; r++) {
    double dot = 0, total = 0;
    for (int64_t c = 0; c < C; c++) {
      dot += vw[r * C + c] * std::exp(lref[r * C + c]);
      total += vw[r * C + c];
    }
    for (int64_t c = 0; c < C; c++) {
      size_t i = r * C + c;
      double p = std::exp(lref[i]);
      // Differences of O(1) terms in float: 2e-6 absolute.
      ASSERT_NEAR(gx[i], p * (vw[i] - dot), 2e-6) << i;
      ASSERT_NEAR(gz[i], vw[i] - p * total, 2e-6 * (1 + std::fabs(total))) << i;
    }
  }
}

TEST_P(Softmax, ScalarInputThrowsNamingOp) {
  try {
    softmax(Tensor::scalar(1.0f));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("softmax"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("()"), std::string::npos) << e.what();
  }
}
