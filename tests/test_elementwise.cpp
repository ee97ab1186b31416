// Elementwise arithmetic: broadcasting forward against a double reference, gradients by finite
// differences, the fused backward layouts at sizes that run multi-threaded, scalar operators, errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "autograd/engine.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/reduce.h"
#include "autograd/gradcheck.h"
#include "tensor/tensor.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

Tensor random_leaf(const Shape& shape, uint64_t seed, float offset = 0.0f) {
  Generator gen(seed);
  Tensor t = Tensor::randn(shape, &gen);
  if (offset != 0.0f) {
    std::vector<float> v = t.to_vector();
    // Divisors: keep |b| >= 1 so neither the quotient nor its finite differences blow up.
    for (float& x : v) x = x >= 0 ? x + offset : x - offset;
    t = Tensor::from_vector(v, shape);
  }
  return t.requires_grad_(true);
}

// The broadcast result computed independently: every output index maps to an input index by
// clamping size-1 dimensions to 0 (numpy's rule), in double.
std::vector<double> reference(const Tensor& a, const Tensor& b, const Shape& out_shape,
                              const std::function<double(double, double)>& op) {
  std::vector<float> va = a.to_vector(), vb = b.to_vector();
  int64_t n = shape_numel(out_shape), nd = static_cast<int64_t>(out_shape.size());
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; i++) {
    int64_t rest = i, ia = 0, ib = 0, stride_a = 1, stride_b = 1;
    for (int64_t k = nd - 1; k >= 0; k--) {
      int64_t idx = rest % out_shape[k];
      rest /= out_shape[k];
      int64_t ka = k - (nd - a.dim()), kb = k - (nd - b.dim());
      if (ka >= 0) { ia += (a.shape()[ka] == 1 ? 0 : idx) * stride_a; stride_a *= a.shape()[ka]; }
      if (kb >= 0) { ib += (b.shape()[kb] == 1 ? 0 : idx) * stride_b; stride_b *= b.shape()[kb]; }
    }
    out[i] = op(va[ia], vb[ib]);
  }
  return out;
}

struct NamedOp {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> fn;
  std::function<double(double, double)> ref;
  float divisor_offset;  // pushes b away from 0 for div
};

const std::vector<NamedOp>& all_ops() {
  static const std::vector<NamedOp> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }, [](double x, double y) { return x + y; }, 0},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }, [](double x, double y) { return x - y; }, 0},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }, [](double x, double y) { return x * y; }, 0},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, [](double x, double y) { return x / y; }, 1},
  };
  return ops;
}

// Same shape, bias-like rows on either side, 3-D two-sided broadcasting, scalar-like and () operands.
const std::vector<std::pair<Shape, Shape>>& shape_pairs() {
  static const std::vector<std::pair<Shape, Shape>> pairs = {
      {{3, 7}, {3, 7}},       {{13}, {13}},     {{4, 5}, {5}},     {{5}, {4, 5}},    {{3, 1, 5}, {1, 4, 5}},
      {{2, 3}, {1, 1}},       {{}, {3, 7}},     {{3, 7}, {}},      {{5, 1, 9}, {9}}, {{5, 1, 9}, {5, 3, 1}},
      {{1, 5}, {4, 5}},       {{2, 3, 4}, {3, 1}},
  };
  return pairs;
}

// The broadcast shape by the rule, written out again here so the test does not trust the code.
Shape ops_broadcast(const Shape& a, const Shape& b) {
  size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t k = 0; k < nd; k++) {
    int64_t x = k + a.size() >= nd ? a[k + a.size() - nd] : 1;
    int64_t y = k + b.size() >= nd ? b[k + b.size() - nd] : 1;
    out[k] = std::max(x, y);
  }
  return out;
}

}  // namespace

// Every test of Elementwise runs at each instruction-set level of the CPU kernels.
class Elementwise : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Elementwise);

TEST_P(Elementwise, ForwardMatchesBroadcastReference) {
  for (const NamedOp& op : all_ops()) {
    for (const auto& [sa, sb] : shape_pairs()) {
      Tensor a = random_leaf(sa, 1), b = random_leaf(sb, 2, op.divisor_offset);
      Tensor y = op.fn(a, b);
      ASSERT_EQ(y.shape(), ops_broadcast(sa, sb)) << op.name;
      std::vector<double> want = reference(a, b, y.shape(), op.ref);
      std::vector<float> got = y.to_vector();
      ASSERT_EQ(got.size(), want.size());
      // One float rounding of the exact result: 2^-24 relative, doubled for margin.
      for (size_t i = 0; i < got.size(); i++)
        ASSERT_NEAR(got[i], want[i], 1.2e-7 * std::fabs(want[i]) + 1e-30)
            << op.name << " " << shape_str(sa) << " " << shape_str(sb) << " element " << i;
    }
  }
}

// Past 32768 elements the forward splits rows into pieces of 16384 across threads: long rows with a
// ragged last piece, a broadcast row, a broadcast scalar and a broadcast column.
TEST_P(Elementwise, ForwardAtThreadedSizes) {
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{3, 40001}, {40001}}, {{50001}, {}}, {{40001, 3}, {40001, 1}}, {{2, 1, 20001}, {3, 1}}};
  for (const NamedOp& op : all_ops()) {
    for (const auto& [sa, sb] : pairs) {
      Tensor a = random_leaf(sa, 12), b = random_leaf(sb, 13, op.divisor_offset);
      Tensor y = op.fn(a, b);
      ASSERT_EQ(y.shape(), ops_broadcast(sa, sb));
      std::vector<double> want = reference(a, b, y.shape(), op.ref);
      std::vector<float> got = y.to_vector();
      for (size_t i = 0; i < got.size(); i++)
        ASSERT_NEAR(got[i], want[i], 1.2e-7 * std::fabs(want[i]) + 1e-30)
            << op.name << " " << shape_str(sa) << " " << shape_str(sb) << " element " << i;
    }
  }
}

TEST_P(Elementwise, BroadcastShapes) {
  EXPECT_EQ(add(random_leaf({3, 1, 5}, 1), random_leaf({1, 4, 5}, 2)).shape(), (Shape{3, 4, 5}));
  EXPECT_EQ(add(random_leaf({4, 5}, 1), random_leaf({5}, 2)).shape(), (Shape{4, 5}));
  EXPECT_EQ(mul(random_leaf({2, 3}, 1), random_leaf({1, 1}, 2)).shape(), (Shape{2, 3}));
  EXPECT_EQ(add(random_leaf({}, 1), random_leaf({}, 2)).shape(), (Shape{}));
  EXPECT_EQ(add(random_leaf({7}, 1), random_leaf({3, 1}, 2)).shape(), (Shape{3, 7}));
}

TEST_P(Elementwise, NonContiguousOperands) {
  // A transposed view walks memory with strides (1, 7): the general strided path.
  Tensor base = random_leaf({7, 3}, 3);
  Tensor a = base.transpose(0, 1);
  Tensor b = random_leaf({3, 7}, 4);
  std::vector<double> want = reference(a.contiguous(), b, {3, 7}, [](double x, double y) { return x * y; });
  std::vector<float> got = mul(a, b).to_vector();
  for (size_t i = 0; i < got.size(); i++) EXPECT_NEAR(got[i], want[i], 1.2e-7 * std::fabs(want[i]));
}

TEST_P(Elementwise, GradCheckEveryOpAndBroadcast) {
  for (const NamedOp& op : all_ops()) {
    for (const auto& [sa, sb] : shape_pairs()) {
      Tensor a = random_leaf(sa, 5), b = random_leaf(sb, 6, op.divisor_offset);
      auto fn = op.fn;
      std::string err = gradcheck([fn](const std::vector<Tensor>& x) { return fn(x[0], x[1]); }, {a, b});
      EXPECT_EQ(err, "") << op.name << " " << shape_str(sa) << " " << shape_str(sb);
    }
  }
}

TEST_P(Elementwise, GradCheckWithOnlyOneOperandNeedingGrad) {
  for (const NamedOp& op : all_ops()) {
    Tensor a = random_leaf({4, 5}, 7), b = random_leaf({5}, 8, op.divisor_offset);
    auto fn = op.fn;
    auto f = [fn](const std::vector<Tensor>& x) { return fn(x[0], x[1]); };
    EXPECT_EQ(gradcheck(f, {a, b.detach()}), "") << op.name;
    EXPECT_EQ(gradcheck(f, {a.detach(), b}), "") << op.name;
  }
}

// The fused backward kernels split rows across threads past 32768 elements, and the bias gradient
// is a column sum over all rows: compare both layouts against double sums at that size.
TEST_P(Elementwise, FusedBackwardMatchesReferenceMultiThreaded) {
  const int64_t rows = 1501, C = 37;  // 55537 elements: the parallel path, odd sizes
  for (const NamedOp& op : all_ops()) {
    for (bool row_operand : {true, false}) {
      Shape sb = row_operand ? Shape{C} : Shape{rows, C};
      Tensor a = random_leaf({rows, C}, 9), b = random_leaf(sb, 10, op.divisor_offset);
      Generator gen(11);
      Tensor w = Tensor::randn({rows, C}, &gen);
      backward(op.fn(a, b), w);
      std::vector<float> va = a.to_vector(), vb = b.to_vector(), vw = w.to_vector();
      std::vector<double> want_da(rows * C), want_db(vb.size(), 0.0);
      std::string name = op.name;
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < C; c++) {
          int64_t i = r * C + c, j = row_operand ? c : i;
          double x = va[i], y = vb[j], g = vw[i];
          double ga = 0, gb = 0;
          if (name == "add") { ga = g; gb = g; }
          if (name == "sub") { ga = g; gb = -g; }
          if (name == "mul") { ga = g * y; gb = g * x; }
          if (name == "div") { ga = g / y; gb = -g * x / (y * y); }
          want_da[i] = ga;
          want_db[j] += gb;
        }
      std::vector<float> da = a.grad().to_vector(), db = b.grad().to_vector();
      // da: one or two float roundings per element. db: a column of 1501 terms; float blocks of 64
      // rows added in double keep the error near 64 * 2^-24 of the column's magnitude (~sqrt(1501)).
      for (size_t i = 0; i < da.size(); i++) ASSERT_NEAR(da[i], want_da[i], 3e-7 * std::fabs(want_da[i]) + 1e-6) << op.name;
      for (size_t j = 0; j < db.size(); j++) ASSERT_NEAR(db[j], want_db[j], 1e-5 * (1 + std::fabs(want_db[j]))) << op.name;
    }
  }
}

TEST_P(Elementwise, GradientsAccumulateWhenAnInputIsUsedTwice) {
  Tensor x = Tensor::from_vector({1, 2, 3}, {3}).requires_grad_(true);
  backward(sum(add(x, x) + mul(x, x)));  // d/dx (2x + x^2) = 2 + 2x
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{4, 6, 8}));
}

TEST_P(Elementwise, ScalarOperators) {
  Tensor x = Tensor::from_vector({1.5f, -2.0f, 4.0f}, {3});
  auto expect = [&](const Tensor& y, const std::function<float(float)>& f, const char* what) {
    std::vector<float> got = y.to_vector(), in = x.to_vector();
    for (size_t i = 0; i < in.size(); i++) EXPECT_FLOAT_EQ(got[i], f(in[i])) << what;
  };
  expect(x + 1.0f, [](float v) { return v + 1.0f; }, "x + 1");
  expect(1.0f + x, [](float v) { return v + 1.0f; }, "1 + x");
  expect(x - 1.0f, [](float v) { return v - 1.0f; }, "x - 1");
  expect(1.0f - x, [](float v) { return 1.0f - v; }, "1 - x");
  expect(2.0f * x, [](float v) { return 2.0f * v; }, "2 * x");
  expect(x * 2.0f, [](float v) { return 2.0f * v; }, "x * 2");
  expect(x / 3.0f, [](float v) { return v / 3.0f; }, "x / 3");
  expect(3.0f / x, [](float v) { return 3.0f / v; }, "3 / x");
  expect(-x, [](float v) { return -v; }, "-x");
  expect(scale(x, 0.5f), [](float v) { return 0.5f * v; }, "scale");
  expect(add_scalar(x, -4.0f), [](float v) { return v - 4.0f; }, "add_scalar");
}

TEST_P(Elementwise, GradCheckScalarOperators) {
  Tensor x = random_leaf({3, 7}, 11, 1.0f);  // away from 0 for 3 / x
  std::vector<std::pair<const char*, std::function<Tensor(const Tensor&)>>> fns = {
      {"x + 1", [](const Tensor& t) { return t + 1.0f; }},   {"1 - x", [](const Tensor& t) { return 1.0f - t; }},
      {"2 * x", [](const Tensor& t) { return 2.0f * t; }},   {"x / 3", [](const Tensor& t) { return t / 3.0f; }},
      {"3 / x", [](const Tensor& t) { return 3.0f / t; }},   {"-x", [](const Tensor& t) { return -t; }},
      {"scale", [](const Tensor& t) { return scale(t, -0.7f); }},
  };
  for (auto& [name, fn] : fns) {
    auto f = fn;
    EXPECT_EQ(gradcheck([f](const std::vector<Tensor>& v) { return f(v[0]); }, {x}), "") << name;
  }
}

TEST_P(Elementwise, ShapesThatDoNotBroadcastThrowNamingOpAndShapes) {
  for (const NamedOp& op : all_ops()) {
    try {
      op.fn(Tensor::zeros({3, 4}), Tensor::ones({5}));
      FAIL() << op.name << " should have thrown";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(op.name), std::string::npos) << msg;
      EXPECT_NE(msg.find("(3, 4)"), std::string::npos) << msg;
      EXPECT_NE(msg.find("(5)"), std::string::npos) << msg;
    }
  }
}

TEST_P(Elementwise, WrongDtypeThrowsNamingIt) {
  Tensor ints = Tensor::from_ints({1, 2, 3}, {3});
  try {
    add(ints, Tensor::ones({3}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("add"), std::string::npos) << msg;
    EXPECT_NE(msg.find("i32"), std::string::npos) << msg;
  }
}
