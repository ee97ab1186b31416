// LayerNorm: forward and backward against a double-precision reference written here (the backward
// through the explicit Jacobian, not the kernel's simplified formula), finite-difference gradient
// checks, accumulation into existing gradients, determinism across runs and thread counts, and
// bad input.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/layernorm.h"
#include "autograd/functions/view.h"
#include "autograd/gradcheck.h"
#include "ops/layernorm.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

struct Reference {
  std::vector<double> y, mean, rstd;
};

// Row statistics in double with the textbook two-pass formulas; weight/bias empty = none.
Reference reference_forward(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                            int64_t N, int64_t C, double eps) {
  Reference r{std::vector<double>(N * C), std::vector<double>(N), std::vector<double>(N)};
  for (int64_t n = 0; n < N; n++) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < C; i++) mean += x[n * C + i];
    mean /= C;
    for (int64_t i = 0; i < C; i++) var += (x[n * C + i] - mean) * (x[n * C + i] - mean);
    var /= C;
    double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < C; i++)
      r.y[n * C + i] = (x[n * C + i] - mean) * rstd * (w.empty() ? 1.0 : w[i]) + (b.empty() ? 0.0 : b[i]);
    r.mean[n] = mean;
    r.rstd[n] = rstd;
  }
  return r;
}

struct ReferenceGrads {
  std::vector<double> dx, dw, db;
};

// dx_j = sum_i dy_i w_i d(norm_i)/d(x_j), with the Jacobian of norm = (x - mean) * rstd written out:
//   d(norm_i)/d(x_j) = rstd (delta_ij - 1/C) - (x_i - mean)(x_j - mean) rstd^3 / C.
ReferenceGrads reference_backward(const std::vector<float>& dy, const std::vector<float>& x, const std::vector<float>& w,
                                  int64_t N, int64_t C, double eps) {
  Reference f = reference_forward(x, {}, {}, N, C, eps);
  ReferenceGrads g{std::vector<double>(N * C, 0.0), std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  for (int64_t n = 0; n < N; n++) {
    const double m = f.mean[n], s = f.rstd[n];
    for (int64_t j = 0; j < C; j++) {
      double sum = 0;
      for (int64_t i = 0; i < C; i++) {
        double jacobian = s * ((i == j ? 1.0 : 0.0) - 1.0 / C) - (x[n * C + i] - m) * (x[n * C + j] - m) * s * s * s / C;
        sum += dy[n * C + i] * (w.empty() ? 1.0 : w[i]) * jacobian;
      }
      g.dx[n * C + j] = sum;
      g.dw[j] += dy[n * C + j] * (x[n * C + j] - m) * s;
      g.db[j] += dy[n * C + j];
    }
  }
  return g;
}



Tensor leaf(Tensor t) { return t.requires_grad_(true); }

float max_abs(const Tensor& t) {
  float m = 0;
  for (float v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

// Restores the OpenMP thread count when a test that changes it ends, even on a failed assertion.
struct ThreadCount {
  int saved = omp_get_max_threads();
  ~ThreadCount() { omp_set_num_threads(saved); }
};

}  // namespace

// Every test of LayerNormOp runs at each instruction-set level of the CPU kernels.
class LayerNormOp : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(LayerNormOp);

// Every test of AddLayerNormOp runs at each instruction-set level of the CPU kernels.
class AddLayerNormOp : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(AddLayerNormOp);

// Tolerance for the forward: f32 row statistics over up to 768 elements carry a relative error of a
// few 1e-7 (vector-lane sums of C/16 terms); outputs are O(3), so 1e-5 absolute is 10x that margin
// and still far below the 1e-3 errors of a wrong mean, variance or eps placement.
TEST_P(LayerNormOp, ForwardMatchesDoubleReference) {
  Generator gen(11);
  const std::vector<Shape> shapes = {{1, 1}, {5, 3}, {13, 37}, {1, 5, 37}, {2, 3, 4}, {3, 768}, {7}};
  for (const Shape& shape : shapes) {
    const int64_t C = shape.back(), N = shape_numel(shape) / C;
    Tensor x = Tensor::randn(shape, &gen), w = Tensor::randn({C}, &gen), b = Tensor::randn({C}, &gen);
    Shape rows(shape.begin(), shape.end() - 1);
    Tensor y = Tensor::empty(shape), mean = Tensor::empty(rows), rstd = Tensor::empty(rows);
    ops::layernorm_forward(y, mean, rstd, x, w, b, 1e-5f);
    Reference r = reference_forward(x.to_vector(), w.to_vector(), b.to_vector(), N, C, 1e-5);
    std::string what = "shape " + shape_str(shape);
    expect_close(y.to_vector(), r.y, 1e-5, 1e-5, what + " y");
    expect_close(mean.to_vector(), r.mean, 1e-6, 1e-6, what + " mean");
    // rstd = 1/sqrt(eps) = 316 when C = 1 (zero variance): relative tolerance.
    expect_close(rstd.to_vector(), r.rstd, 1e-6, 1e-5, what + " rstd");
    // The differentiable function gives the same values.
    EXPECT_EQ(layernorm(x, w, b).to_vector(), y.to_vector()) << what;
  }
}

TEST_P(LayerNormOp, ForwardWithoutAffineAndWithOnlyOne) {
  Generator gen(12);
  Tensor x = Tensor::randn({5, 37}, &gen), w = Tensor::randn({37}, &gen), b = Tensor::randn({37}, &gen);
  std::vector<float> xs = x.to_vector(), ws = w.to_vector(), bs = b.to_vector();
  expect_close(layernorm(x, Tensor(), Tensor()).to_vector(), reference_forward(xs, {}, {}, 5, 37, 1e-5).y, 1e-5, 1e-5,
               "no affine");
  expect_close(layernorm(x, w, Tensor()).to_vector(), reference_forward(xs, ws, {}, 5, 37, 1e-5).y, 1e-5, 1e-5,
               "weight only");
  expect_close(layernorm(x, Tensor(), b).to_vector(), reference_forward(xs, {}, bs, 5, 37, 1e-5).y, 1e-5, 1e-5,
               "bias only");
  // A larger eps changes the result: it is used, and where PyTorch puts it (inside the sqrt).
  expect_close(layernorm(x, w, b, 0.5f).to_vector(), reference_forward(xs, ws, bs, 5, 37, 0.5).y, 1e-5, 1e-5, "eps 0.5");
}

// Rows of 1e4 + N(0, 1): E[x^2] - E[x]^2 in f32 loses every digit here (x^2 ~ 1e8, whose f32 ulp is
// 8), and a plain two-pass mean is off by ~1e-3 (the f32 ulp of 1e4). The kernel's corrected
// two-pass keeps the outputs within 1e-4 of the exact values of these f32 inputs.
TEST_P(LayerNormOp, LargeOffsetKeepsPrecision) {
  Generator gen(13);
  const int64_t N = 6, C = 768;
  Tensor x = Tensor::randn({N, C}, &gen);
  std::vector<float> xs = x.to_vector();
  for (float& v : xs) v += 1e4f;
  x = Tensor::from_vector(xs, {N, C});
  Reference r = reference_forward(xs, {}, {}, N, C, 1e-5);
  expect_close(layernorm(x, Tensor(), Tensor()).to_vector(), r.y, 1e-4, 0, "offset 1e4");
}

// C >= 3 only: at C = 1 the normalised value is 0 whatever x is, and at C = 2 it is +-1 up to
// O(eps / (x0 - x1)^2), so dx and dweight vanish and a finite-difference check would compare zeros
// with zeros (OneFeatureGivesTheBias checks C = 1 exactly). Each shape must also give gradients of
// order 1, so the check cannot pass on a kernel that writes nothing.
TEST_P(LayerNormOp, GradCheck) {
  Generator gen(14);
  const std::vector<Shape> shapes = {{1, 3}, {4, 3}, {5, 4}, {2, 3, 7}, {13, 5}, {1, 37}};
  for (const Shape& shape : shapes) {
    const int64_t C = shape.back();
    Tensor x = leaf(Tensor::randn(shape, &gen)), w = leaf(Tensor::randn({C}, &gen)), b = leaf(Tensor::randn({C}, &gen));
    auto fn = [](const std::vector<Tensor>& in) { return layernorm(in[0], in[1], in[2]); };
    EXPECT_EQ(gradcheck(fn, {x, w, b}), "") << "shape " << shape_str(shape);
    backward(layernorm(x, w, b), Tensor::randn(shape, &gen));
    for (const Tensor* t : {&x, &w, &b}) EXPECT_GT(max_abs(t->grad()), 0.1f) << "shape " << shape_str(shape);
  }
}

// One feature per row: x - mean is exactly 0, so y = bias and dweight = 0 exactly, dbias = the sum
// of dy, and dx = rstd (dy w - mean(dy w)) = 0 in exact arithmetic. The kernel may contract
// dy w - mean(dy w) into one FMA, which keeps the product unrounded against its rounded mean: the
// difference is that rounding, at most u |dy w| (u = 2^-24), then scaled by rstd = 1/sqrt(eps) = 316
// and rounded once more, so |dx| <= 2u rstd |dy w|.
TEST_P(LayerNormOp, OneFeatureGivesTheBias) {
  Generator gen(18);
  Tensor x = leaf(Tensor::randn({4, 1}, &gen)), w = leaf(Tensor::randn({1}, &gen)), b = leaf(Tensor::randn({1}, &gen));
  Tensor dy = Tensor::randn({4, 1}, &gen);
  Tensor y = layernorm(x, w, b);
  for (float v : y.to_vector()) EXPECT_EQ(v, b.to_vector()[0]);
  backward(y, dy);
  const double rstd = 1.0 / std::sqrt(1e-5), u = std::ldexp(1.0, -24);
  std::vector<float> d = dy.to_vector(), dx = x.grad().to_vector();
  for (size_t i = 0; i < d.size(); i++)
    EXPECT_LE(std::fabs(dx[i]), 2 * u * rstd * std::fabs(d[i] * w.to_vector()[0])) << "row " << i;
  EXPECT_EQ(w.grad().to_vector()[0], 0.0f);
  EXPECT_FLOAT_EQ(b.grad().to_vector()[0], d[0] + d[1] + d[2] + d[3]);
}

TEST_P(LayerNormOp, GradCheckWithoutAffine) {
  Generator gen(15);
  Tensor x = leaf(Tensor::randn({4, 9}, &gen)), w = leaf(Tensor::randn({9}, &gen));
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return layernorm(in[0], Tensor(), Tensor()); }, {x}), "");
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return layernorm(in[0], in[1], Tensor()); }, {x, w}), "");
}

// The backward at sizes finite differences cannot cover, against the Jacobian in double. dx, dw and
// db are sums of O(C) or O(N) f32 terms of order 1: 1e-5 absolute is ~10x their rounding error.
TEST_P(LayerNormOp, BackwardMatchesDoubleReference) {
  Generator gen(16);
  const std::vector<Shape> shapes = {{3, 768}, {13, 37}, {2, 5, 3}};
  for (const Shape& shape : shapes) {
    const int64_t C = shape.back(), N = shape_numel(shape) / C;
    Tensor x = leaf(Tensor::randn(shape, &gen)), w = leaf(Tensor::randn({C}, &gen)), b = leaf(Tensor::randn({C}, &gen));
    Tensor dy = Tensor::randn(shape, &gen);
    backward(layernorm(x, w, b), dy);
    ReferenceGrads g = reference_backward(dy.to_vector(), x.to_vector(), w.to_vector(), N, C, 1e-5);
    std::string what = "shape " + shape_str(shape);
    expect_close(x.grad().to_vector(), g.dx, 1e-5, 1e-5, what + " dx");
    expect_close(w.grad().to_vector(), g.dw, 1e-5, 1e-5, what + " dweight");
    expect_close(b.grad().to_vector(), g.db, 1e-5, 1e-5, what + " dbias");
  }
}

// Gradients add into what the buffers hold (the engine's contract), and an undefined gradient is
// simply not computed.
TEST_P(LayerNormOp, BackwardAccumulates) {
  Generator gen(17);
  const int64_t N = 5, C = 11;
  Tensor x = Tensor::randn({N, C}, &gen), w = Tensor::randn({C}, &gen), b = Tensor::randn({C}, &gen);
  Tensor dy = Tensor::randn({N, C}, &gen);
  Tensor y = Tensor::empty({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  ops::layernorm_forward(y, mean, rstd, x, w, b, 1e-5f);
  Tensor dx = Tensor::randn({N, C}, &gen), dw = Tensor::randn({C}, &gen), db = Tensor::randn({C}, &gen);
  std::vector<float> dx0 = dx.to_vector(), dw0 = dw.to_vector(), db0 = db.to_vector();
  ops::layernorm_backward(dx, dw, db, dy, x, w, mean, rstd);
  ReferenceGrads g = reference_backward(dy.to_vector(), x.to_vector(), w.to_vector(), N, C, 1e-5);
  for (int64_t i = 0; i < N * C; i++) g.dx[i] += dx0[i];
  for (int64_t i = 0; i < C; i++) { g.dw[i] += dw0[i]; g.db[i] += db0[i]; }
  expect_close(dx.to_vector(), g.dx, 1e-5, 1e-5, "dx");
  expect_close(dw.to_vector(), g.dw, 1e-5, 1e-5, "dweight");
  expect_close(db.to_vector(), g.db, 1e-5, 1e-5, "dbias");

  // Only dweight wanted: dx and dbias undefined.
  Tensor dw_only = Tensor::zeros({C}), none;
  ops::layernorm_backward(none, dw_only, none, dy, x, w, mean, rstd);
  expect_close(dw_only.to_vector(), reference_backward(dy.to_vector(), x.to_vector(), w.to_vector(), N, C, 1e-5).dw,
               1e-5, 1e-5, "dweight alone");
}

// The same inputs give the same gradient bits on every run and with any thread count: the
// parameter gradients are reduced over fixed row chunks in a fixed order. The size is above the
// kernel's parallel threshold and N does not divide evenly among 2 or 3 threads.
TEST_P(LayerNormOp, BackwardIsDeterministicAcrossRunsAndThreadCounts) {
  ThreadCount restore;
  Generator gen(18);
  const int64_t N = 301, C = 384;
  Tensor x = Tensor::randn({N, C}, &gen), w = Tensor::randn({C}, &gen), b = Tensor::randn({C}, &gen);
  Tensor dy = Tensor::randn({N, C}, &gen);
  auto grads = [&](int threads) {
    omp_set_num_threads(threads);
    Tensor xl = leaf(x.clone()), wl = leaf(w.clone()), bl = leaf(b.clone());
    backward(layernorm(xl, wl, bl), dy);
    return std::vector<std::vector<float>>{xl.grad().to_vector(), wl.grad().to_vector(), bl.grad().to_vector()};
  };
  auto first = grads(2);
  EXPECT_EQ(grads(2), first) << "two runs with 2 threads differ";
  EXPECT_EQ(grads(1), first) << "1 thread differs from 2";
  EXPECT_EQ(grads(3), first) << "3 threads differ from 2";
}

TEST_P(LayerNormOp, BadInputNamesTheOpAndShapes) {
  Generator gen(19);
  Tensor x = Tensor::randn({2, 3, 4}, &gen), w = Tensor::randn({4}, &gen), b = Tensor::randn({4}, &gen);
  expect_error([&] { layernorm(x, Tensor::randn({5}, &gen), b); }, {"layernorm", "weight", "(5)", "(4)", "(2, 3, 4)"});
  expect_error([&] { layernorm(x, w, Tensor::randn({3}, &gen)); }, {"layernorm", "bias", "(3)", "(4)", "(2, 3, 4)"});
  expect_error([&] { layernorm(x, Tensor::randn({4, 1}, &gen), b); }, {"layernorm", "weight", "(4, 1)", "(2, 3, 4)"});
  expect_error([&] { layernorm(Tensor::scalar(1.0f), Tensor(), Tensor()); }, {"layernorm", "x", "()"});
  expect_error([&] { layernorm(Tensor::randn({3, 0}, &gen), Tensor(), Tensor()); }, {"layernorm", "x", "(3, 0)"});
  expect_error([&] { layernorm(Tensor::from_ints({1, 2}, {1, 2}), Tensor(), Tensor()); }, {"layernorm", "x", "i32", "f32"});
  expect_error([&] { layernorm(x, w, b, -1.0f); }, {"layernorm", "eps"});
  expect_error([&] { layernorm(Tensor(), w, b); }, {"layernorm", "x", "undefined"});
}

// A non-contiguous input (a transposed view) is normalised along its logical last dimension, and
// its gradient lands in its own layout.
TEST_P(LayerNormOp, NonContiguousInput) {
  Generator gen(19);
  Tensor base = leaf(Tensor::randn({6, 5}, &gen)), w = Tensor::randn({6}, &gen), b = Tensor::randn({6}, &gen);
  auto fn = [&](const std::vector<Tensor>& in) { return layernorm(transpose(in[0], 0, 1), w, b); };
  Reference r = reference_forward(base.transpose(0, 1).contiguous().to_vector(), w.to_vector(), b.to_vector(), 5, 6, 1e-5);
  expect_close(fn({base}).to_vector(), r.y, 1e-5, 1e-5, "transposed x");
  EXPECT_EQ(gradcheck(fn, {base}), "");
}

// ---- add_layernorm: the residual add and the LayerNorm after it, one op with two outputs --------

// Finite differences through either output alone (the other then gets no gradient, and the engine
// hands the backward a zero-filled one) and through both, on odd shapes.
TEST_P(AddLayerNormOp, GradChecksThroughEitherOutputAndBoth) {
  Generator gen(30);
  const std::vector<Shape> shapes = {{1, 1}, {5, 3}, {2, 3, 7}, {1, 37}};
  for (const Shape& shape : shapes) {
    const int64_t C = shape.back();
    Tensor x = leaf(Tensor::randn(shape, &gen)), d = leaf(Tensor::randn(shape, &gen));
    Tensor w = leaf(Tensor::randn({C}, &gen)), b = leaf(Tensor::randn({C}, &gen));
    auto sum_only = [](const std::vector<Tensor>& in) { return add_layernorm(in[0], in[1], in[2], in[3]).sum; };
    auto normalized_only = [](const std::vector<Tensor>& in) {
      return add_layernorm(in[0], in[1], in[2], in[3]).normalized;
    };
    auto both = [](const std::vector<Tensor>& in) {
      AddLayerNorm r = add_layernorm(in[0], in[1], in[2], in[3]);
      return r.sum * 0.7f + r.normalized;
    };
    std::string what = "shape " + shape_str(shape);
    EXPECT_EQ(gradcheck(sum_only, {x, d, w, b}), "") << what;
    EXPECT_EQ(gradcheck(normalized_only, {x, d, w, b}), "") << what;
    EXPECT_EQ(gradcheck(both, {x, d, w, b}), "") << what;
  }
  Tensor x = leaf(Tensor::randn({4, 9}, &gen)), d = leaf(Tensor::randn({4, 9}, &gen));
  auto no_affine = [](const std::vector<Tensor>& in) {
    AddLayerNorm r = add_layernorm(in[0], in[1], Tensor(), Tensor());
    return r.sum + r.normalized;
  };
  EXPECT_EQ(gradcheck(no_affine, {x, d}), "");
  // Only one of x and delta wants a gradient: the other's slot is undefined.
  Tensor frozen = Tensor::randn({4, 9}, &gen);
  EXPECT_EQ(gradcheck(no_affine, {x, frozen}), "");
  EXPECT_EQ(gradcheck(no_affine, {frozen, d}), "");
}

// The same values as add followed by layernorm: the forward bit for bit (the CPU kernel is that
// composition row by row), the gradients within rounding. Those are sums of the same O(C) f32 terms
// in another order plus one more add (the sum output's gradient): |difference| <= (C + 2) u times
// the sum of the terms' magnitudes, which for unit-scale inputs and C = 37 is under 1e-5; 1e-5 + 1e-5
// relative covers it and still catches a missing or doubled term (of order 1).
TEST_P(AddLayerNormOp, EqualsAddThenLayerNorm) {
  Generator gen(31);
  const Shape shape = {3, 5, 37};
  Tensor x = Tensor::randn(shape, &gen), d = Tensor::randn(shape, &gen);
  Tensor w = Tensor::randn({37}, &gen), b = Tensor::randn({37}, &gen);
  Tensor dsum = Tensor::randn(shape, &gen), dnorm = Tensor::randn(shape, &gen);
  auto run = [&](bool fused) {
    Tensor xl = leaf(x.clone()), dl = leaf(d.clone()), wl = leaf(w.clone()), bl = leaf(b.clone());
    Tensor sum, normalized;
    if (fused) {
      AddLayerNorm r = add_layernorm(xl, dl, wl, bl);
      sum = r.sum, normalized = r.normalized;
    } else {
      sum = xl + dl;
      normalized = layernorm(sum, wl, bl);
    }
    std::vector<std::vector<float>> values = {sum.to_vector(), normalized.to_vector()};
    backward(sum * dsum + normalized * dnorm, Tensor::ones(shape));
    for (const Tensor& t : {xl, dl, wl, bl}) values.push_back(t.grad().to_vector());
    return values;
  };
  std::vector<std::vector<float>> fused = run(true), plain = run(false);
  EXPECT_EQ(fused[0], plain[0]) << "sum";
  EXPECT_EQ(fused[1], plain[1]) << "normalized";
  const char* names[] = {"dx", "ddelta", "dweight", "dbias"};
  for (int i = 0; i < 4; i++) {
    std::vector<double> want(plain[2 + i].begin(), plain[2 + i].end());
    expect_close(fused[2 + i], want, 1e-5, 1e-5, names[i]);
  }
}

TEST_P(AddLayerNormOp, BadInputNamesTheOpAndShapes) {
  Generator gen(32);
  Tensor x = Tensor::randn({5, 7}, &gen), w = Tensor::randn({7}, &gen);
  EXPECT_ERROR_MENTIONS(add_layernorm(x, Tensor::randn({5, 6}, &gen), w, Tensor()), "layernorm", "(5, 6)", "(5, 7)");
  EXPECT_ERROR_MENTIONS(add_layernorm(x, Tensor(), w, Tensor()), "add_layernorm", "delta");
  EXPECT_ERROR_MENTIONS(add_layernorm(x, Tensor::randn({5, 7}, &gen), Tensor::randn({6}, &gen), Tensor()), "layernorm",
                        "weight", "(6)");
}
