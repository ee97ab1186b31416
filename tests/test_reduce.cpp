// Sums and means: values against double references (including sums over millions of elements that
// a plain float loop gets wrong), every dimension with and without keepdim, gradients, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/reduce.h"
#include "autograd/gradcheck.h"
#include "tensor/tensor.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

Tensor random_leaf(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return Tensor::randn(shape, &gen).requires_grad_(true);
}

// Sum over `dim` in double, written directly from the index arithmetic.
std::vector<double> sum_dim_ref(const Tensor& x, int64_t dim) {
  const Shape& s = x.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < dim; k++) outer *= s[k];
  for (int64_t k = dim + 1; k < x.dim(); k++) inner *= s[k];
  std::vector<float> v = x.to_vector();
  std::vector<double> out(outer * inner, 0.0);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t k = 0; k < s[dim]; k++)
      for (int64_t i = 0; i < inner; i++) out[o * inner + i] += v[(o * s[dim] + k) * inner + i];
  return out;
}

}  // namespace

// Every test of Reduce runs at each instruction-set level of the CPU kernels.
class Reduce : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Reduce);

TEST_P(Reduce, SumAndMeanOfAllElements) {
  for (const Shape& shape : {Shape{3, 7}, Shape{5, 1, 9}, Shape{13}, Shape{}}) {
    Tensor x = random_leaf(shape, 1);
    double want = 0;
    for (float v : x.to_vector()) want += v;
    Tensor s = sum(x), m = mean(x);
    EXPECT_EQ(s.shape(), Shape{});
    EXPECT_EQ(m.shape(), Shape{});
    // One float rounding of the result, plus float rounding inside a block of <= 63 numbers of
    // size ~1: 1e-6 absolute.
    EXPECT_NEAR(s.item(), want, 1e-6 * (1 + std::fabs(want))) << shape_str(shape);
    EXPECT_NEAR(m.item(), want / x.numel(), 1e-6 * (1 + std::fabs(want))) << shape_str(shape);
  }
}

// 5M uniform [0, 1) numbers sum to ~2.5e6. A sequential float loop is off by ~3.5e-5 relative here
// (past 2^21 every addend is rounded to a multiple of 0.25), so 1e-6 relative only passes with
// blocked or double summation. Likewise a column sum over 3M rows.
TEST_P(Reduce, LargeSumsMatchDoubleReference) {
  Generator gen(2);
  Tensor x = Tensor::rand({5000011}, &gen);
  double want = 0;
  for (float v : x.to_vector()) want += v;
  EXPECT_NEAR(sum(x).item(), want, 1e-6 * want);
  EXPECT_NEAR(mean(x).item(), want / 5000011.0, 1e-6 * want / 5000011.0);

  Tensor cols = Tensor::rand({3000017, 2}, &gen);
  std::vector<double> ref = sum_dim_ref(cols, 0);
  std::vector<float> got = sum(cols, 0).to_vector();
  for (size_t i = 0; i < got.size(); i++) EXPECT_NEAR(got[i], ref[i], 1e-6 * ref[i]) << i;
}

TEST_P(Reduce, SumOverEachDimensionWithAndWithoutKeepdim) {
  // Odd sizes; shapes whose inner size is 1 (rows), > 1 (columns), and large enough to run threaded.
  for (const Shape& shape : {Shape{3, 7}, Shape{5, 1, 9}, Shape{13}, Shape{4, 3, 5, 2}, Shape{37, 1031}, Shape{1031, 37}}) {
    Tensor x = random_leaf(shape, 3);
    for (int64_t dim = 0; dim < x.dim(); dim++) {
      std::vector<double> want = sum_dim_ref(x, dim);
      Shape dropped = shape, kept = shape;
      dropped.erase(dropped.begin() + dim);
      kept[dim] = 1;
      Tensor s = sum(x, dim), sk = sum(x, dim, true), m = mean(x, dim - x.dim());  // negative dim
      EXPECT_EQ(s.shape(), dropped);
      EXPECT_EQ(sk.shape(), kept);
      EXPECT_EQ(m.shape(), dropped);
      std::vector<float> vs = s.to_vector(), vk = sk.to_vector(), vm = m.to_vector();
      // Sums of <= 1031 standard normals: float blocks, |sum| ~ 32; 2e-6 relative to that scale.
      for (size_t i = 0; i < want.size(); i++) {
        double tol = 2e-6 * (1 + std::sqrt(static_cast<double>(shape[dim])));
        ASSERT_NEAR(vs[i], want[i], tol) << shape_str(shape) << " dim " << dim;
        ASSERT_EQ(vk[i], vs[i]);
        ASSERT_NEAR(vm[i], want[i] / shape[dim], tol / shape[dim]) << shape_str(shape) << " dim " << dim;
      }
    }
  }
}

TEST_P(Reduce, GradCheck) {
  for (const Shape& shape : {Shape{3, 7}, Shape{5, 1, 9}, Shape{13}}) {
    Tensor x = random_leaf(shape, 4);
    auto check = [&](const std::function<Tensor(const Tensor&)>& fn, const std::string& what) {
      EXPECT_EQ(gradcheck([fn](const std::vector<Tensor>& in) { return fn(in[0]); }, {x}), "") << what << shape_str(shape);
    };
    check([](const Tensor& t) { return sum(t); }, "sum");
    check([](const Tensor& t) { return mean(t); }, "mean");
    for (int64_t dim = 0; dim < x.dim(); dim++) {
      check([dim](const Tensor& t) { return sum(t, dim); }, "sum dim " + std::to_string(dim));
      check([dim](const Tensor& t) { return sum(t, dim, true); }, "sum keepdim " + std::to_string(dim));
      check([dim](const Tensor& t) { return mean(t, dim); }, "mean dim " + std::to_string(dim));
    }
  }
}

TEST_P(Reduce, BackwardBroadcastsAtThreadedSizes) {
  Tensor x = random_leaf({301, 257}, 5);
  Generator gen(7);
  Tensor w = Tensor::randn({301}, &gen);
  backward(mean(x, 1), w);  // dx[r, c] = w[r] / 257
  std::vector<float> g = x.grad().to_vector(), vw = w.to_vector();
  for (int64_t r = 0; r < 301; r++)
    for (int64_t c = 0; c < 257; c++) ASSERT_FLOAT_EQ(g[r * 257 + c], vw[r] / 257.0f);
  Tensor y = random_leaf({50021}, 6);
  backward(sum(y) * 3.0f);
  for (float v : y.grad().to_vector()) ASSERT_EQ(v, 3.0f);
}

TEST_P(Reduce, BadDimensionThrowsNamingOpAndDim) {
  try {
    sum(Tensor::ones({2, 3}), 2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("sum"), std::string::npos) << msg;
    EXPECT_NE(msg.find("2"), std::string::npos) << msg;
  }
  EXPECT_THROW(mean(Tensor::ones({2, 3}), -3), Error);
}
