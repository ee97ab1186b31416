// Fused softmax + cross-entropy: loss, log-sum-exp and gradient against a double-precision
// reference written here, finite-difference gradient checks, ignore_index, all-ignored batches,
// huge and uniform logits, NaN propagation, determinism, the vectorised exp against libm, and bad
// input.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/crossentropy.h"
#include "autograd/gradcheck.h"
#include "ops/cpu/crossentropy.h"
#include "ops/crossentropy.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

struct Reference {
  double loss = 0;
  std::vector<double> lse;     // per row; unused for ignored rows
  std::vector<double> dlogits; // for dloss = 1
};

// Textbook log-softmax in double, row by row, max-shifted.
Reference reference(const std::vector<float>& logits, const std::vector<int32_t>& targets, int64_t V,
                    int32_t ignore_index) {
  const int64_t N = static_cast<int64_t>(targets.size());
  Reference r;
  r.lse.assign(N, 0.0);
  r.dlogits.assign(N * V, 0.0);
  int64_t count = 0;
  for (int32_t t : targets) count += t != ignore_index;
  for (int64_t n = 0; n < N; n++) {
    if (targets[n] == ignore_index) continue;
    double m = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int64_t v = 0; v < V; v++) m = std::max(m, static_cast<double>(logits[n * V + v]));
    for (int64_t v = 0; v < V; v++) sum += std::exp(logits[n * V + v] - m);
    r.lse[n] = m + std::log(sum);
    r.loss += (r.lse[n] - logits[n * V + targets[n]]) / count;
    for (int64_t v = 0; v < V; v++)
      r.dlogits[n * V + v] = (std::exp(logits[n * V + v] - r.lse[n]) - (v == targets[n] ? 1.0 : 0.0)) / count;
  }
  return r;
}



// Targets in [0, V), with every `ignore_every`-th one (when > 0) set to ignore_index.
Tensor random_targets(const Shape& shape, int64_t V, Generator& gen, int ignore_every = 0, int32_t ignore_index = -1) {
  std::vector<int32_t> t(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < t.size(); i++)
    t[i] = ignore_every > 0 && i % ignore_every == 1 ? ignore_index : static_cast<int32_t>(gen.below(V));
  return Tensor::from_ints(t, shape);
}

Tensor scaled_randn(const Shape& shape, float scale, Generator& gen) {
  std::vector<float> v = Tensor::randn(shape, &gen).to_vector();
  for (float& x : v) x *= scale;
  return Tensor::from_vector(v, shape);
}

float max_abs(const Tensor& t) {
  float m = 0;
  for (float v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

struct ThreadCount {
  int saved = omp_get_max_threads();
  ~ThreadCount() { omp_set_num_threads(saved); }
};

int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));  // both >= 0 here
}

}  // namespace

// Every test of CrossEntropyOp runs at each instruction-set level of the CPU kernels.
class CrossEntropyOp : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(CrossEntropyOp);

// Tolerances: each row's lse is exp-summed in f32 lanes (each exp within 2 ulp) and logged in
// double, and the loss is formed in double, so the loss and lse carry a relative error of a few
// 1e-7; 1e-5 relative is a 10x margin and far below the 1e-2 effect of a wrong row or target.
TEST_P(CrossEntropyOp, ForwardMatchesDoubleReference) {
  Generator gen(31);
  const std::vector<Shape> shapes = {{1, 1}, {5, 3}, {13, 37}, {2, 3, 65}, {4, 1000}, {3, 5000}, {1, 17}};
  for (const Shape& shape : shapes) {
    const int64_t V = shape.back();
    Shape rows(shape.begin(), shape.end() - 1);
    Tensor logits = scaled_randn(shape, 3.0f, gen), targets = random_targets(rows, V, gen, 4);
    Reference r = reference(logits.to_vector(), targets.to_int_vector(), V, -1);
    Tensor loss = Tensor::empty({}), lse = Tensor::empty(rows);
    ops::crossentropy_forward(loss, lse, logits, targets, -1);
    std::string what = "shape " + shape_str(shape);
    EXPECT_NEAR(loss.item(), r.loss, 1e-6 + 1e-5 * std::fabs(r.loss)) << what;
    std::vector<float> got_lse = lse.to_vector();
    std::vector<int32_t> t = targets.to_int_vector();
    for (size_t n = 0; n < t.size(); n++)
      if (t[n] != -1) {
        EXPECT_NEAR(got_lse[n], r.lse[n], 1e-5 * std::fabs(r.lse[n]) + 1e-6) << what << " row " << n;
      }
    Tensor y = cross_entropy(logits, targets);
    EXPECT_EQ(y.shape(), Shape{}) << what;
    EXPECT_EQ(y.item(), loss.item()) << what;
  }
}

// V >= 2 only: with one class the softmax is 1 whatever the logit, so the loss and its gradient
// are 0 and a finite-difference check would compare zeros (OneClassGivesZeroLossAndGradient checks
// V = 1). Each shape must also give a gradient of order 1/N, so the check cannot pass on a kernel
// that writes nothing.
TEST_P(CrossEntropyOp, GradCheck) {
  Generator gen(32);
  const std::vector<Shape> shapes = {{1, 2}, {5, 7}, {2, 3, 11}, {13, 3}, {1, 37}};
  for (const Shape& shape : shapes) {
    const int64_t V = shape.back();
    Shape rows(shape.begin(), shape.end() - 1);
    Tensor logits = Tensor::randn(shape, &gen).requires_grad_(true), targets = random_targets(rows, V, gen, 3);
    EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1]); }, {logits, targets}), "")
        << "shape " << shape_str(shape);
    backward(cross_entropy(logits, targets));
    // The target's entry is (p_t - 1) / count with count <= N: above 1e-2 / N unless every kept
    // row has p_t > 0.99, which these unit-variance logits do not reach.
    EXPECT_GT(max_abs(logits.grad()), 1e-2f / shape_numel(rows)) << "shape " << shape_str(shape);
  }
  Tensor logits = Tensor::randn({6, 5}, &gen).requires_grad_(true), targets = random_targets({6}, 5, gen, 2, -100);
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], -100); }, {logits, targets}),
            "")
      << "ignore_index -100";
}

// dlogits = (softmax - onehot) * dloss / count; each element is one exp (2 ulp) of logit - lse with
// lse rounded to f32 (|lse| ~ 10 here: 5e-7 absolute), so 1e-5 relative plus 1e-7 x the row scale.
TEST_P(CrossEntropyOp, BackwardMatchesDoubleReference) {
  Generator gen(33);
  const std::vector<Shape> shapes = {{13, 37}, {2, 3, 65}, {3, 5000}};
  for (const Shape& shape : shapes) {
    const int64_t V = shape.back();
    Shape rows(shape.begin(), shape.end() - 1);
    Tensor logits = scaled_randn(shape, 3.0f, gen).requires_grad_(true), targets = random_targets(rows, V, gen, 5);
    const float dloss = 2.5f;
    backward(cross_entropy(logits, targets), Tensor::scalar(dloss));
    Reference r = reference(logits.to_vector(), targets.to_int_vector(), V, -1);
    int64_t count = 0;
    for (int32_t t : targets.to_int_vector()) count += t != -1;
    for (double& d : r.dlogits) d *= dloss;
    expect_close(logits.grad().to_vector(), r.dlogits, 1e-7 * dloss / count, 1e-5, "shape " + shape_str(shape));
  }
}

// The gradient adds into what dlogits held.
TEST_P(CrossEntropyOp, BackwardAccumulates) {
  Generator gen(34);
  const int64_t N = 6, V = 19;
  Tensor logits = Tensor::randn({N, V}, &gen), targets = random_targets({N}, V, gen, 3);
  Tensor loss = Tensor::empty({}), lse = Tensor::empty({N});
  ops::crossentropy_forward(loss, lse, logits, targets, -1);
  Tensor dlogits = Tensor::randn({N, V}, &gen);
  std::vector<float> before = dlogits.to_vector();
  std::vector<double> want(before.begin(), before.end());
  ops::crossentropy_backward(dlogits, Tensor::scalar(1.0f), logits, targets, lse, -1);
  Reference r = reference(logits.to_vector(), targets.to_int_vector(), V, -1);
  for (size_t i = 0; i < want.size(); i++) want[i] += r.dlogits[i];
  expect_close(dlogits.to_vector(), want, 1e-6, 1e-5, "dlogits");
}

// Rows whose target is ignore_index change neither the loss (a mean over the other rows only) nor
// any gradient, and get exactly zero gradient themselves; ignore_index may also be a class index.
TEST_P(CrossEntropyOp, IgnoredRowsContributeNothing) {
  Generator gen(35);
  const int64_t N = 6, V = 9;
  Tensor logits = Tensor::randn({N, V}, &gen);
  for (int32_t ignore_index : {-1, -100, 2}) {
    std::vector<int32_t> t = {4, ignore_index, 0, 8, ignore_index, 5};
    if (ignore_index == 2) t[2] = 1;  // no other row may hold the class being ignored
    Tensor full = logits.clone().requires_grad_(true);
    Tensor loss = cross_entropy(full, Tensor::from_ints(t, {N}), ignore_index);
    backward(loss);
    // The same rows without the ignored ones.
    std::vector<float> all = logits.to_vector(), kept;
    std::vector<int32_t> kept_targets;
    for (int64_t n = 0; n < N; n++)
      if (t[n] != ignore_index) {
        kept.insert(kept.end(), all.begin() + n * V, all.begin() + (n + 1) * V);
        kept_targets.push_back(t[n]);
      }
    const int64_t M = static_cast<int64_t>(kept_targets.size());
    Tensor subset = Tensor::from_vector(kept, {M, V}).requires_grad_(true);
    Tensor subset_loss = cross_entropy(subset, Tensor::from_ints(kept_targets, {M}), ignore_index);
    backward(subset_loss);
    EXPECT_EQ(loss.item(), subset_loss.item()) << "ignore_index " << ignore_index;
    std::vector<float> g = full.grad().to_vector(), gs = subset.grad().to_vector();
    for (int64_t n = 0, m = 0; n < N; n++) {
      for (int64_t v = 0; v < V; v++) {
        if (t[n] == ignore_index) {
          EXPECT_EQ(g[n * V + v], 0.0f) << "ignored row " << n;
        } else {
          EXPECT_EQ(g[n * V + v], gs[m * V + v]) << "row " << n;
        }
      }
      if (t[n] != ignore_index) m++;
    }
  }
}

// One class: lse = the logit exactly (max + log(1)), so the loss is exactly 0, also with label
// smoothing (every term is lse - logit), and the gradient softmax - onehot = exp(0) - 1 is 0 up to
// the vectorised exp's 2 ulp at 1 (2.4e-7), divided by the row count.
TEST_P(CrossEntropyOp, OneClassGivesZeroLossAndGradient) {
  Generator gen(46);
  std::vector<float> values = scaled_randn({5, 1}, 3.0f, gen).to_vector();
  Tensor targets = Tensor::from_ints({0, 0, -1, 0, 0}, {5});
  for (float smoothing : {0.0f, 0.3f}) {
    Tensor logits = Tensor::from_vector(values, {5, 1}).requires_grad_(true);
    Tensor loss = cross_entropy(logits, targets, -1, smoothing);
    EXPECT_EQ(loss.item(), 0.0f) << "label_smoothing " << smoothing;
    backward(loss);
    for (float g : logits.grad().to_vector()) EXPECT_LE(std::fabs(g), 2.4e-7f / 4) << "label_smoothing " << smoothing;
  }
}

// PyTorch returns nan (0 / 0) here; tilegrad returns 0 with a zero gradient (see crossentropy.h).
TEST_P(CrossEntropyOp, AllIgnoredGivesZeroLossAndZeroGradient) {
  Generator gen(45);
  Tensor logits = Tensor::randn({2, 3, 5}, &gen).requires_grad_(true);
  Tensor loss = cross_entropy(logits, Tensor::full({2, 3}, -1.0f, DType::I32));
  EXPECT_EQ(loss.item(), 0.0f);
  backward(loss);
  for (float g : logits.grad().to_vector()) EXPECT_EQ(g, 0.0f);
}

// Logits of +-1e4 would overflow a naive exp. The loss is formed in double from the row max, so it
// keeps the 1e-5 relative tolerance; the gradient's softmax uses the f32 lse, whose rounding at 1e4
// (ulp/2 = 4.9e-4) shifts each probability by up to that relative amount: 1e-3 x the row scale.
TEST_P(CrossEntropyOp, HugeLogitsStayFinite) {
  Generator gen(36);
  const int64_t N = 4, V = 50;
  std::vector<float> values = scaled_randn({N, V}, 1e4f, gen).to_vector();
  // Row 3: all near 1e4, so the probabilities are spread rather than one-hot.
  for (int64_t v = 0; v < V; v++) values[3 * V + v] = 1e4f + gen.normal();
  Tensor logits = Tensor::from_vector(values, {N, V}).requires_grad_(true);
  Tensor targets = Tensor::from_ints({0, 7, 49, 3}, {N});
  Tensor loss = cross_entropy(logits, targets);
  Reference r = reference(values, targets.to_int_vector(), V, -1);
  ASSERT_TRUE(std::isfinite(loss.item()));
  EXPECT_NEAR(loss.item(), r.loss, 1e-5 * std::fabs(r.loss));
  backward(loss);
  for (float g : logits.grad().to_vector()) ASSERT_TRUE(std::isfinite(g));
  expect_close(logits.grad().to_vector(), r.dlogits, 1e-3 / N, 0, "dlogits");
}

// Equal logits: softmax is uniform and the loss is log V. exp(0) = 1 exactly and the row sum V is
// exact, so the loss is log V rounded once to f32 (EXPECT_FLOAT_EQ: within 4 ulp).
TEST_P(CrossEntropyOp, UniformLogitsGiveLogV) {
  for (int64_t V : {1, 2, 65, 50304})
    for (float c : {0.0f, 7.5f, -3e3f}) {
      Tensor logits = Tensor::full({3, V}, c);
      Tensor targets = Tensor::from_ints({0, static_cast<int32_t>(V - 1), static_cast<int32_t>(V / 2)}, {3});
      EXPECT_FLOAT_EQ(cross_entropy(logits, targets).item(), static_cast<float>(std::log(static_cast<double>(V))))
          << "V " << V << ", logits " << c;
    }
}

// A NaN logit makes the loss NaN (the trainer's non-finite check must see it), unless its row is
// ignored.
TEST_P(CrossEntropyOp, NanLogitPropagatesUnlessIgnored) {
  std::vector<float> values(3 * 20, 0.5f);
  values[1 * 20 + 17] = std::nanf("");
  Tensor logits = Tensor::from_vector(values, {3, 20});
  EXPECT_TRUE(std::isnan(cross_entropy(logits, Tensor::from_ints({0, 1, 2}, {3})).item()));
  EXPECT_FLOAT_EQ(cross_entropy(logits, Tensor::from_ints({0, -1, 2}, {3})).item(), std::log(20.0f));
}

// Loss and gradient bits do not depend on the run or the thread count: rows are independent and the
// loss is summed in row order. N x V is above the kernel's parallel threshold.
TEST_P(CrossEntropyOp, DeterministicAcrossRunsAndThreadCounts) {
  ThreadCount restore;
  Generator gen(37);
  const int64_t N = 301, V = 203;
  Tensor logits = scaled_randn({N, V}, 2.0f, gen), targets = random_targets({N}, V, gen, 7);
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Tensor x = logits.clone().requires_grad_(true);
    Tensor loss = cross_entropy(x, targets);
    backward(loss);
    std::vector<float> out = x.grad().to_vector();
    out.push_back(loss.item());
    return out;
  };
  std::vector<float> first = run(2);
  EXPECT_EQ(run(2), first) << "two runs with 2 threads differ";
  EXPECT_EQ(run(1), first) << "1 thread differs from 2";
  EXPECT_EQ(run(3), first) << "3 threads differ from 2";
}

// The vectorised exp the kernels use, against libm's exp in double rounded to f32 (the correctly
// rounded result but for rare double-rounding ties): within 2 ulp over the normal range, within
// 1 subnormal step below it, and the special values exact.
TEST_P(CrossEntropyOp, VectorExpMatchesLibm) {
  std::vector<float> in;
  for (int64_t i = 0; i <= 2000000; i++) in.push_back(-87.3f + static_cast<float>(i) * (88.7f + 87.3f) / 2000000.0f);
  Generator gen(38);
  for (int i = 0; i < 200000; i++) in.push_back((gen.uniform() - 0.5f) * 2.0f);  // dense near 0
  std::vector<float> out(in.size());
  cpu::vector_exp(out.data(), in.data(), static_cast<int64_t>(in.size()));
  int64_t worst = 0;
  float worst_x = 0;
  for (size_t i = 0; i < in.size(); i++) {
    int64_t d = ulp_distance(out[i], static_cast<float>(std::exp(static_cast<double>(in[i]))));
    if (d > worst) { worst = d; worst_x = in[i]; }
  }
  EXPECT_LE(worst, 2) << "at x = " << worst_x;

  // Subnormal results: absolute error within one subnormal step (2^-149) plus half a step of rounding.
  std::vector<float> low, low_out(20001);
  for (int i = 0; i <= 20000; i++) low.push_back(-103.9f + static_cast<float>(i) * (103.9f - 87.4f) / 20000.0f);
  cpu::vector_exp(low_out.data(), low.data(), static_cast<int64_t>(low.size()));
  for (size_t i = 0; i < low.size(); i++)
    ASSERT_LE(std::fabs(low_out[i] - std::exp(static_cast<double>(low[i]))), 1.5 * std::ldexp(1.0, -149)) << low[i];

  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> special = {0.0f, -0.0f, 1.0f, 88.8f, 89.0f, 1e30f, inf, -104.0f, -1e30f, -inf, std::nanf("")};
  std::vector<float> special_out(special.size());
  cpu::vector_exp(special_out.data(), special.data(), static_cast<int64_t>(special.size()));
  EXPECT_EQ(special_out[0], 1.0f);
  EXPECT_EQ(special_out[1], 1.0f);
  EXPECT_LE(ulp_distance(special_out[2], static_cast<float>(std::exp(1.0))), 1);
  for (int i = 3; i <= 6; i++) EXPECT_EQ(special_out[i], inf) << special[i];
  for (int i = 7; i <= 9; i++) EXPECT_EQ(special_out[i], 0.0f) << special[i];
  EXPECT_TRUE(std::isnan(special_out[10]));
}

TEST_P(CrossEntropyOp, OutOfRangeTargetNamesIt) {
  Generator gen(39);
  Tensor logits = Tensor::randn({2, 3, 7}, &gen);
  expect_error([&] { cross_entropy(logits, Tensor::from_ints({0, 1, 2, 3, 4, 9}, {2, 3})); },
               {"cross_entropy", "targets[1, 2]", "9", "V = 7"});
  expect_error([&] { cross_entropy(logits, Tensor::from_ints({0, -5, 2, 3, 4, 1}, {2, 3})); },
               {"cross_entropy", "targets[0, 1]", "-5", "V = 7", "ignore_index (-1)"});
  expect_error([&] { cross_entropy(logits, Tensor::from_ints({0, -1, 2, 3, 4, 7}, {2, 3}), -100); },
               {"cross_entropy", "targets[0, 1]", "-1", "ignore_index (-100)"});
}

TEST_P(CrossEntropyOp, BadInputNamesTheOpAndShapes) {
  Generator gen(40);
  expect_error([&] { cross_entropy(Tensor::randn({4, 6, 65}, &gen), Tensor::from_ints(std::vector<int32_t>(20, 0), {4, 5})); },
               {"cross_entropy", "targets", "(4, 5)", "(4, 6)", "(4, 6, 65)"});
  expect_error([&] { cross_entropy(Tensor::randn({8, 65}, &gen), Tensor::from_ints(std::vector<int32_t>(4, 0), {2, 2})); },
               {"cross_entropy", "targets", "(2, 2)", "(8)", "(8, 65)"});
  expect_error([&] { cross_entropy(Tensor::randn({5}, &gen), Tensor::from_ints({0}, {1})); },
               {"cross_entropy", "logits", "(5)", "(N, V)"});
  expect_error([&] { cross_entropy(Tensor::randn({2, 5}, &gen), Tensor::zeros({2})); }, {"cross_entropy", "targets", "f32", "i32"});
  expect_error([&] { cross_entropy(Tensor::randn({2, 5}, &gen).to(DType::I32), Tensor::from_ints({0, 1}, {2})); },
               {"cross_entropy", "logits", "i32", "f32, bf16 or f16"});
  expect_error([&] { cross_entropy(Tensor(), Tensor::from_ints({0, 1}, {2})); }, {"cross_entropy", "logits", "undefined"});
}

// ---- label smoothing ------------------------------------------------------------------------

namespace {

// PyTorch's definition, in double, from log-probabilities: each kept row contributes
// (1 - e) * (-log p[target]) + e * mean over v of (-log p[v]); the mean is over the kept rows. The
// gradient of row n (dloss = 1) is (p - (1 - e) onehot - e / V) / count.
Reference smoothed_reference(const std::vector<float>& logits, const std::vector<int32_t>& targets, int64_t V,
                             int32_t ignore_index, double e) {
  const int64_t N = static_cast<int64_t>(targets.size());
  Reference r;
  r.lse.assign(N, 0.0);
  r.dlogits.assign(N * V, 0.0);
  int64_t count = 0;
  for (int32_t t : targets) count += t != ignore_index;
  for (int64_t n = 0; n < N; n++) {
    if (targets[n] == ignore_index) continue;
    double m = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int64_t v = 0; v < V; v++) m = std::max(m, static_cast<double>(logits[n * V + v]));
    for (int64_t v = 0; v < V; v++) sum += std::exp(logits[n * V + v] - m);
    r.lse[n] = m + std::log(sum);
    double nll = 0, smooth = 0;
    for (int64_t v = 0; v < V; v++) {
      const double log_p = logits[n * V + v] - r.lse[n];
      if (v == targets[n]) nll = -log_p;
      smooth += -log_p / V;
      r.dlogits[n * V + v] = (std::exp(log_p) - (v == targets[n] ? 1.0 - e : 0.0) - e / V) / count;
    }
    r.loss += ((1.0 - e) * nll + e * smooth) / count;
  }
  return r;
}

}  // namespace

// Same tolerances as the unsmoothed forward and backward above: the smoothing term adds the row
// sum of the logits, taken in f32 lanes per block of 256 and in double across blocks (a relative
// error of a few 1e-7 of sum |logit|, which is V times the mean, so still ~1e-6 of the loss).
TEST_P(CrossEntropyOp, LabelSmoothingMatchesDoubleReference) {
  Generator gen(41);
  const std::vector<Shape> shapes = {{5, 3}, {13, 37}, {2, 3, 65}, {3, 1000}};
  for (const Shape& shape : shapes) {
    const int64_t V = shape.back();
    Shape rows(shape.begin(), shape.end() - 1);
    Tensor logits = scaled_randn(shape, 3.0f, gen).requires_grad_(true), targets = random_targets(rows, V, gen, 4);
    for (double e : {0.1, 0.35, 1.0}) {
      Reference r = smoothed_reference(logits.to_vector(), targets.to_int_vector(), V, -1, e);
      logits.set_grad(Tensor());
      Tensor loss = cross_entropy(logits, targets, -1, static_cast<float>(e));
      std::string what = "shape " + shape_str(shape) + " smoothing " + std::to_string(e);
      EXPECT_NEAR(loss.item(), r.loss, 1e-6 + 1e-5 * std::fabs(r.loss)) << what;
      backward(loss);
      expect_close(logits.grad().to_vector(), r.dlogits, 1e-7, 1e-5, what + " dlogits");
    }
  }
  // Smoothing 0 is the plain loss, bit for bit.
  Tensor logits = scaled_randn({7, 29}, 3.0f, gen), targets = random_targets({7}, 29, gen, 3);
  EXPECT_EQ(cross_entropy(logits, targets, -1, 0.0f).item(), cross_entropy(logits, targets).item());
}

// Ignored rows are excluded from both terms and from the count, as PyTorch.
TEST_P(CrossEntropyOp, LabelSmoothingExcludesIgnoredRows) {
  Generator gen(42);
  Tensor logits = scaled_randn({6, 9}, 2.0f, gen);
  Tensor targets = Tensor::from_ints({3, -100, 0, 8, -100, 5}, {6});
  Reference r = smoothed_reference(logits.to_vector(), targets.to_int_vector(), 9, -100, 0.2);
  EXPECT_NEAR(cross_entropy(logits, targets, -100, 0.2f).item(), r.loss, 1e-6 + 1e-5 * std::fabs(r.loss));
  // The same as the loss over the kept rows alone.
  std::vector<float> all = logits.to_vector(), kept;
  for (int64_t n : {0, 2, 3, 5}) kept.insert(kept.end(), all.begin() + n * 9, all.begin() + (n + 1) * 9);
  EXPECT_NEAR(cross_entropy(Tensor::from_vector(kept, {4, 9}), Tensor::from_ints({3, 0, 8, 5}, {4}), -100, 0.2f).item(),
              r.loss, 1e-6 + 1e-5 * std::fabs(r.loss));
}

TEST_P(CrossEntropyOp, LabelSmoothingGradCheck) {
  Generator gen(43);
  for (const Shape& shape : std::vector<Shape>{{5, 7}, {2, 3, 11}, {1, 2}}) {
    const int64_t V = shape.back();
    Shape rows(shape.begin(), shape.end() - 1);
    Tensor logits = Tensor::randn(shape, &gen).requires_grad_(true), targets = random_targets(rows, V, gen, 3);
    EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return cross_entropy(in[0], in[1], -1, 0.25f); },
                        {logits, targets}),
              "")
        << "shape " << shape_str(shape);
  }
}

TEST_P(CrossEntropyOp, LabelSmoothingOutOfRangeNamesIt) {
  Generator gen(44);
  Tensor logits = Tensor::randn({2, 5}, &gen), targets = Tensor::from_ints({0, 1}, {2});
  expect_error([&] { cross_entropy(logits, targets, -1, -0.1f); }, {"cross_entropy", "label_smoothing", "[0, 1]"});
  expect_error([&] { cross_entropy(logits, targets, -1, 1.5f); }, {"cross_entropy", "label_smoothing", "1.5"});
}
