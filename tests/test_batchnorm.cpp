// BatchNorm over NHWC (statistics over every dimension but the last): forward in training and
// evaluation and the running statistics against a double-precision reference written here, a large
// offset that E[x^2] - E[x]^2 in f32 could not survive, the backward against the textbook formula in
// double, finite-difference gradient checks (train, eval, fused ReLU), accumulation, determinism
// across thread counts, the module's buffers, and bad input.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/activation.h"
#include "autograd/functions/batchnorm.h"
#include "autograd/gradcheck.h"
#include "nn/batchnorm.h"
#include "ops/batchnorm.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

Tensor leaf(Tensor t) { return t.requires_grad_(true); }

struct ThreadCount {
  int saved = omp_get_max_threads();
  ~ThreadCount() { omp_set_num_threads(saved); }
};

// Per-channel statistics of x (M,C) in double, two-pass: mean and biased variance.
struct Stats {
  std::vector<double> mean, var;
};
Stats reference_stats(const std::vector<float>& x, int64_t M, int64_t C) {
  Stats s{std::vector<double>(C, 0.0), std::vector<double>(C, 0.0)};
  for (int64_t m = 0; m < M; m++)
    for (int64_t c = 0; c < C; c++) s.mean[c] += x[m * C + c];
  for (int64_t c = 0; c < C; c++) s.mean[c] /= M;
  for (int64_t m = 0; m < M; m++)
    for (int64_t c = 0; c < C; c++) s.var[c] += (x[m * C + c] - s.mean[c]) * (x[m * C + c] - s.mean[c]);
  for (int64_t c = 0; c < C; c++) s.var[c] /= M;
  return s;
}

// y = [relu]((x - mean) / sqrt(var + eps) * w + b) with the given statistics; w, b empty = none.
std::vector<double> reference_normalise(const std::vector<float>& x, const std::vector<double>& mean,
                                        const std::vector<double>& var, const std::vector<float>& w,
                                        const std::vector<float>& b, int64_t M, int64_t C, double eps, bool relu) {
  std::vector<double> y(M * C);
  for (int64_t m = 0; m < M; m++)
    for (int64_t c = 0; c < C; c++) {
      double z = (x[m * C + c] - mean[c]) / std::sqrt(var[c] + eps) * (w.empty() ? 1.0 : w[c]) + (b.empty() ? 0.0 : b[c]);
      y[m * C + c] = relu ? std::max(z, 0.0) : z;
    }
  return y;
}

std::vector<double> as_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// x of `shape` whose every channel holds values +-a, a in [0.4, 1.4], in mirrored pairs (so the
// batch mean is exactly the channel's offset), plus an offset per channel: normalised values are at
// least 0.4 / 1.4 from 0, which keeps a fused ReLU's kink (with |bias| <= 0.1 and |weight| >= 0.5)
// far from the finite-difference steps of 1e-2. The leading dimensions must hold an even count.
Tensor away_from_kink(const Shape& shape, Generator& gen) {
  const int64_t C = shape.back(), M = shape_numel(shape) / C;
  std::vector<float> x(M * C);
  for (int64_t c = 0; c < C; c++) {
    const float offset = 2.0f * gen.normal();
    for (int64_t m = 0; m < M / 2; m++) {
      float a = (gen.uniform() < 0.5f ? -1.0f : 1.0f) * (0.4f + gen.uniform());
      x[m * C + c] = offset + a;
      x[(M / 2 + m) * C + c] = offset - a;
    }
  }
  return Tensor::from_vector(x, shape);
}

// Weights of either sign with |w| in [0.5, 1.5], biases in [-0.1, 0.1].
Tensor weights_away_from_zero(int64_t C, Generator& gen) {
  std::vector<float> w(C);
  for (float& v : w) v = (gen.uniform() < 0.5f ? -1.0f : 1.0f) * (0.5f + gen.uniform());
  return Tensor::from_vector(w, {C});
}
Tensor small_biases(int64_t C, Generator& gen) {
  std::vector<float> b(C);
  for (float& v : b) v = 0.2f * gen.uniform() - 0.1f;
  return Tensor::from_vector(b, {C});
}

}  // namespace

// Every test of BatchNormOp runs at each instruction-set level of the CPU kernels.
class BatchNormOp : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(BatchNormOp);

// Tolerances: f32 outputs of order 3 carry a rounding error of a few 1e-7 (the statistics are summed
// in f32 over blocks of at most 32 rows, the blocks in double); 1e-5 is 10x that and far below the
// 1e-2 errors of a wrong variance (biased vs unbiased at M = 30) or a misplaced eps.
TEST_P(BatchNormOp, TrainForwardMatchesDoubleReference) {
  Generator gen(21);
  // NHWC maps with C a multiple of 16 and not, a rank-2 and a rank-3 input.
  const std::vector<Shape> shapes = {{2, 3, 5, 7}, {3, 2, 2, 16}, {1, 5, 3, 33}, {6, 4}, {2, 5, 19}};
  for (const Shape& shape : shapes) {
    const int64_t C = shape.back(), M = shape_numel(shape) / C;
    Tensor x = Tensor::randn(shape, &gen), w = Tensor::randn({C}, &gen), b = Tensor::randn({C}, &gen);
    for (bool relu : {false, true}) {
      Tensor y = Tensor::empty(shape), mean = Tensor::empty({C}), rstd = Tensor::empty({C}), none;
      ops::batchnorm_forward(y, mean, rstd, x, w, b, none, none, true, 0.1f, 1e-5f, relu);
      Stats s = reference_stats(x.to_vector(), M, C);
      std::string what = "shape " + shape_str(shape) + (relu ? " relu" : "");
      expect_close(y.to_vector(), reference_normalise(x.to_vector(), s.mean, s.var, w.to_vector(), b.to_vector(), M, C,
                                                      1e-5, relu),
                   1e-5, 1e-5, what + " y");
      expect_close(mean.to_vector(), s.mean, 1e-6, 1e-6, what + " mean");
      std::vector<double> rstd_want(C);
      for (int64_t c = 0; c < C; c++) rstd_want[c] = 1.0 / std::sqrt(s.var[c] + 1e-5);
      expect_close(rstd.to_vector(), rstd_want, 1e-6, 1e-6, what + " rstd");
      // The differentiable function gives the same bits.
      EXPECT_EQ(batch_norm(x, w, b, Tensor(), Tensor(), true, 0.1f, 1e-5f, relu).to_vector(), y.to_vector()) << what;
    }
  }
}

// Three training steps on different batches: the running mean follows the batch means and the
// running variance the UNBIASED batch variances (times M / (M - 1); here M = 12, a 9% difference),
// with momentum as PyTorch: running = (1 - momentum) running + momentum batch. Then evaluation
// normalises with them. The module counts the batches.
TEST_P(BatchNormOp, RunningStatisticsAfterThreeStepsAndEval) {
  Generator gen(22);
  const int64_t N = 3, H = 2, W = 2, C = 5, M = N * H * W;
  for (float momentum : {0.1f, 0.3f}) {
    BatchNorm2d bn(C, 1e-5f, momentum);
    std::vector<double> running_mean(C, 0.0), running_var(C, 1.0);
    for (int step = 0; step < 3; step++) {
      Tensor x = Tensor::randn({N, H, W, C}, &gen);
      std::vector<float> xs = x.to_vector();
      for (int64_t i = 0; i < M * C; i++) xs[i] = xs[i] * (1.0f + static_cast<float>(i % C)) + static_cast<float>(step);
      x = Tensor::from_vector(xs, {N, H, W, C});
      bn.forward(x);
      Stats s = reference_stats(xs, M, C);
      for (int64_t c = 0; c < C; c++) {
        running_mean[c] = (1 - momentum) * running_mean[c] + momentum * s.mean[c];
        running_var[c] = (1 - momentum) * running_var[c] + momentum * s.var[c] * M / (M - 1);
      }
    }
    std::string what = "momentum " + std::to_string(momentum);
    // Values up to ~25 updated in f32: 1e-5 relative is ~10x their rounding.
    expect_close(bn.running_mean.to_vector(), running_mean, 1e-6, 1e-5, what + " running_mean");
    expect_close(bn.running_var.to_vector(), running_var, 1e-6, 1e-5, what + " running_var");
    EXPECT_EQ(bn.num_batches_tracked.to_int_vector(), std::vector<int32_t>{3}) << what;

    bn.eval();
    Tensor x = Tensor::randn({N, H, W, C}, &gen);
    std::vector<double> var_used = as_double(bn.running_var.to_vector()), mean_used = as_double(bn.running_mean.to_vector());
    std::vector<double> want = reference_normalise(x.to_vector(), mean_used, var_used, bn.weight.to_vector(),
                                                   bn.bias.to_vector(), M, C, 1e-5, false);
    std::vector<float> running_before = bn.running_mean.to_vector();
    expect_close(bn.forward(x).to_vector(), want, 1e-5, 1e-5, what + " eval");
    std::vector<double> want_relu = want;
    for (double& v : want_relu) v = std::max(v, 0.0);
    expect_close(bn.forward_relu(x).to_vector(), want_relu, 1e-5, 1e-5, what + " eval relu");
    // Evaluation neither moves the statistics nor counts.
    EXPECT_EQ(bn.running_mean.to_vector(), running_before) << what;
    EXPECT_EQ(bn.num_batches_tracked.to_int_vector(), std::vector<int32_t>{3}) << what;
  }
}

// Channels of 1e4 + N(0, 1): in f32, E[x^2] ~ 1e8 has an ulp of 8, so E[x^2] - E[x]^2 would return
// a variance off by units (or negative) and the outputs would be wrong in their first digit. The
// kernel sums d = x - first row (exact here, by Sterbenz) and d^2 in f32 over blocks of 32 rows:
// at most 32 roundings (1.9e-6) of sums whose cancellation in Q/M - (S/M)^2 is at most 1 + 2 * 4 * 4
// for a first row and a mean within 4 standard deviations, so the variance is within 1e-4 relative
// (typically ~1e-7). The outputs are then off by the f32 rounding of the saved mean, at most half
// the ulp of 1e4 (4.9e-4), times rstd (~1): within 1e-3 of the exact values.
TEST_P(BatchNormOp, LargeOffsetKeepsPrecision) {
  Generator gen(23);
  const int64_t M = 4 * 8 * 8, C = 17;
  std::vector<float> xs = Tensor::randn({M, C}, &gen).to_vector();
  for (float& v : xs) v += 1e4f;
  Tensor x = Tensor::from_vector(xs, {4, 8, 8, C});
  Tensor running_mean = Tensor::zeros({C}), running_var = Tensor::ones({C});
  Tensor y = batch_norm(x, Tensor(), Tensor(), running_mean, running_var, true, 1.0f);
  Stats s = reference_stats(xs, M, C);
  expect_close(y.to_vector(), reference_normalise(xs, s.mean, s.var, {}, {}, M, C, 1e-5, false), 1e-3, 0, "offset 1e4");
  std::vector<double> unbiased(C);
  for (int64_t c = 0; c < C; c++) unbiased[c] = s.var[c] * M / (M - 1);
  expect_close(running_var.to_vector(), unbiased, 0, 1e-4, "running_var at offset 1e4");
}

// dx through the batch statistics, with g = dy (masked by z > 0 with relu), norm = (x - mean) rstd:
//   dx = w rstd (g - mean(g) - norm mean(g norm)), dweight = sum(g norm), dbias = sum(g);
// in evaluation dx = w rstd g. Sums of up to 60 terms of order 1 in f32: 1e-5 is ~10x their rounding.
TEST_P(BatchNormOp, BackwardMatchesDoubleReference) {
  Generator gen(24);
  const Shape shape = {2, 5, 3, 19};
  const int64_t C = 19, M = 30;
  for (bool training : {true, false}) {
    for (bool relu : {false, true}) {
      Tensor x = leaf(Tensor::randn(shape, &gen)), w = leaf(Tensor::randn({C}, &gen)), b = leaf(Tensor::randn({C}, &gen));
      Tensor running_mean = Tensor::randn({C}, &gen), running_var = Tensor::rand({C}, &gen);
      Tensor dy = Tensor::randn(shape, &gen);
      std::vector<float> rm0 = running_mean.to_vector(), rv0 = running_var.to_vector();
      backward(batch_norm(x, w, b, running_mean, running_var, training, 0.1f, 1e-5f, relu), dy);

      std::vector<float> xs = x.to_vector(), ws = w.to_vector(), bs = b.to_vector(), dys = dy.to_vector();
      Stats s = training ? reference_stats(xs, M, C) : Stats{as_double(rm0), as_double(rv0)};
      std::vector<double> z = reference_normalise(xs, s.mean, s.var, ws, bs, M, C, 1e-5, false);
      std::vector<double> g(M * C), norm(M * C), sum_g(C, 0.0), sum_gn(C, 0.0);
      for (int64_t i = 0; i < M * C; i++) {
        const int64_t c = i % C;
        g[i] = relu && z[i] <= 0 ? 0.0 : dys[i];
        norm[i] = (xs[i] - s.mean[c]) / std::sqrt(s.var[c] + 1e-5);
        sum_g[c] += g[i];
        sum_gn[c] += g[i] * norm[i];
      }
      std::vector<double> dx(M * C);
      for (int64_t i = 0; i < M * C; i++) {
        const int64_t c = i % C;
        const double scale = ws[c] / std::sqrt(s.var[c] + 1e-5);
        dx[i] = training ? scale * (g[i] - sum_g[c] / M - norm[i] * sum_gn[c] / M) : scale * g[i];
      }
      std::string what = std::string(training ? "train" : "eval") + (relu ? " relu" : "");
      expect_close(x.grad().to_vector(), dx, 1e-5, 1e-5, what + " dx");
      expect_close(w.grad().to_vector(), sum_gn, 1e-5, 1e-5, what + " dweight");
      expect_close(b.grad().to_vector(), sum_g, 1e-5, 1e-5, what + " dbias");
    }
  }
}

TEST_P(BatchNormOp, GradCheckTrain) {
  Generator gen(25);
  const std::vector<Shape> shapes = {{2, 3, 3, 5}, {3, 1, 1, 7}, {5, 3}};
  for (const Shape& shape : shapes) {
    const int64_t C = shape.back();
    Tensor x = leaf(Tensor::randn(shape, &gen)), w = leaf(Tensor::randn({C}, &gen)), b = leaf(Tensor::randn({C}, &gen));
    auto fn = [](const std::vector<Tensor>& in) { return batch_norm(in[0], in[1], in[2], Tensor(), Tensor(), true); };
    EXPECT_EQ(gradcheck(fn, {x, w, b}), "") << "shape " << shape_str(shape);
    auto no_affine = [](const std::vector<Tensor>& in) { return batch_norm(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true); };
    EXPECT_EQ(gradcheck(no_affine, {x}), "") << "no affine, shape " << shape_str(shape);
  }
}

TEST_P(BatchNormOp, GradCheckEval) {
  Generator gen(26);
  const int64_t C = 7;
  Tensor x = leaf(Tensor::randn({3, 3, 1, C}, &gen)), w = leaf(Tensor::randn({C}, &gen)), b = leaf(Tensor::randn({C}, &gen));
  Tensor running_mean = Tensor::randn({C}, &gen), running_var = Tensor::rand({C}, &gen);
  auto fn = [&](const std::vector<Tensor>& in) {
    return batch_norm(in[0], in[1], in[2], running_mean, running_var, false);
  };
  EXPECT_EQ(gradcheck(fn, {x, w, b}), "");
}

// The fused ReLU, on inputs whose normalised values stay clear of the kink (see away_from_kink).
TEST_P(BatchNormOp, GradCheckFusedRelu) {
  Generator gen(27);
  const int64_t C = 5;
  Tensor x = leaf(away_from_kink({2, 3, 3, C}, gen));
  Tensor w = leaf(weights_away_from_zero(C, gen)), b = leaf(small_biases(C, gen));
  auto train = [](const std::vector<Tensor>& in) {
    return batch_norm(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1f, 1e-5f, true);
  };
  EXPECT_EQ(gradcheck(train, {x, w, b}), "");
  // Evaluation with running mean 0 and variance 1: z = x w + b, clear of 0 for x = offset +- a only
  // when the offset is 0, so take the mirrored values around 0.
  Tensor centred = leaf(away_from_kink({2, 3, 3, C}, gen));
  std::vector<float> cs = centred.to_vector();
  Stats s = reference_stats(cs, 18, C);
  for (int64_t i = 0; i < 18 * C; i++) cs[i] -= static_cast<float>(s.mean[i % C]);
  centred = leaf(Tensor::from_vector(cs, {2, 3, 3, C}));
  Tensor zeros = Tensor::zeros({C}), ones = Tensor::ones({C});
  auto eval = [&](const std::vector<Tensor>& in) {
    return batch_norm(in[0], in[1], in[2], zeros, ones, false, 0.1f, 1e-5f, true);
  };
  EXPECT_EQ(gradcheck(eval, {centred, w, b}), "");
  // And the fusion is the composition.
  EXPECT_EQ(batch_norm(x, w, b, Tensor(), Tensor(), true, 0.1f, 1e-5f, true).to_vector(),
            relu(batch_norm(x, w, b, Tensor(), Tensor(), true)).to_vector());
}

// Gradients add into what the buffers hold (the engine's contract).
TEST_P(BatchNormOp, BackwardAccumulates) {
  Generator gen(28);
  const int64_t C = 6;
  const Shape shape = {2, 3, 2, C};
  Tensor x = Tensor::randn(shape, &gen), w = Tensor::randn({C}, &gen), b = Tensor::randn({C}, &gen);
  Tensor dy = Tensor::randn(shape, &gen);
  Tensor y = Tensor::empty(shape), mean = Tensor::empty({C}), rstd = Tensor::empty({C}), none;
  ops::batchnorm_forward(y, mean, rstd, x, w, b, none, none, true, 0.1f, 1e-5f, false);
  Tensor dx = Tensor::zeros(shape), dw = Tensor::zeros({C}), db = Tensor::zeros({C});
  ops::batchnorm_backward(dx, dw, db, dy, x, w, b, mean, rstd, true, false);
  std::vector<float> dx1 = dx.to_vector(), dw1 = dw.to_vector(), db1 = db.to_vector();
  ops::batchnorm_backward(dx, dw, db, dy, x, w, b, mean, rstd, true, false);
  auto doubled = [](const std::vector<float>& v) {
    std::vector<double> d(v.size());
    for (size_t i = 0; i < v.size(); i++) d[i] = 2.0 * v[i];
    return d;
  };
  // Adding a value to itself is exact in floating point: the second call must double every bit.
  expect_close(dx.to_vector(), doubled(dx1), 0, 0, "dx");
  expect_close(dw.to_vector(), doubled(dw1), 0, 0, "dweight");
  expect_close(db.to_vector(), doubled(db1), 0, 0, "dbias");
}

// Above the kernels' parallel threshold, with M not divisible by the chunk or thread counts: the
// same bits from 1, 2 and 3 threads (fixed row chunks, merged in order).
TEST_P(BatchNormOp, DeterministicAcrossThreadCounts) {
  ThreadCount restore;
  Generator gen(29);
  const Shape shape = {3, 15, 17, 48};
  Tensor x = Tensor::randn(shape, &gen), w = Tensor::randn({48}, &gen), b = Tensor::randn({48}, &gen);
  Tensor dy = Tensor::randn(shape, &gen);
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Tensor xl = leaf(x.clone()), wl = leaf(w.clone()), bl = leaf(b.clone());
    Tensor rm = Tensor::zeros({48}), rv = Tensor::ones({48});
    Tensor y = batch_norm(xl, wl, bl, rm, rv, true, 0.1f, 1e-5f, true);
    backward(y, dy);
    return std::vector<std::vector<float>>{y.to_vector(), rm.to_vector(), rv.to_vector(), xl.grad().to_vector(),
                                           wl.grad().to_vector(), bl.grad().to_vector()};
  };
  auto first = run(2);
  EXPECT_EQ(run(1), first) << "1 thread differs from 2";
  EXPECT_EQ(run(3), first) << "3 threads differ from 2";
}

TEST_P(BatchNormOp, BadInputNamesTheOpAndArgument) {
  Generator gen(51);
  Tensor x = Tensor::randn({2, 3, 3, 4}, &gen), w = Tensor::ones({4}), b = Tensor::zeros({4});
  Tensor rm = Tensor::zeros({4}), rv = Tensor::ones({4});
  expect_error([&] { batch_norm(x, Tensor::ones({5}), b, rm, rv, true); }, {"batch_norm", "weight", "(5)", "(4)"});
  expect_error([&] { batch_norm(x, w, Tensor::zeros({3}), rm, rv, true); }, {"batch_norm", "bias", "(3)", "(4)"});
  expect_error([&] { batch_norm(x, w, b, Tensor::zeros({3}), rv, true); }, {"batch_norm", "running_mean", "(3)"});
  expect_error([&] { batch_norm(x, w, b, rm, Tensor::ones({4}).to(DType::BF16), true); },
               {"batch_norm", "running_var", "bf16", "f32"});
  expect_error([&] { batch_norm(x, w, b, Tensor(), Tensor(), false); }, {"batch_norm", "running_mean", "evaluation"});
  expect_error([&] { batch_norm(x, w, b, rm, Tensor(), true); }, {"batch_norm", "running_var"});
  expect_error([&] { batch_norm(Tensor::randn({1, 1, 1, 4}, &gen), w, b, rm, rv, true); },
               {"batch_norm", "(1, 1, 1, 4)", "more than 1"});
  expect_error([&] { batch_norm(Tensor::from_ints({1, 2}, {1, 2}), Tensor(), Tensor(), Tensor(), Tensor(), true); },
               {"batch_norm", "x", "i32", "f32"});
  expect_error([&] { batch_norm(Tensor::scalar(1.0f), Tensor(), Tensor(), Tensor(), Tensor(), true); },
               {"batch_norm", "x", "()"});
  expect_error([&] { batch_norm(x, w, b, rm, rv, true, 0.1f, -1.0f); }, {"batch_norm", "eps"});
  expect_error([&] { batch_norm(x, w, b, rm, rv, true, 1.5f); }, {"batch_norm", "momentum"});
  expect_error([&] { BatchNorm2d(0); }, {"BatchNorm2d", "channels", "0"});
}

// PyTorch's names, shapes and dtypes, so a state dict maps one-to-one; to(bf16) converts the
// parameters but keeps the running statistics f32 (bf16 would round away a momentum-0.1 update of a
// value near 1: its ulp there is 2^-7) and the counter i32.
TEST(BatchNormModule, BuffersAndParametersAndToBf16) {
  BatchNorm2d bn(6);
  std::vector<std::string> names;
  for (const auto& [name, t] : bn.state_dict()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}));
  EXPECT_EQ(bn.num_batches_tracked.shape(), Shape{});
  EXPECT_EQ(bn.num_batches_tracked.dtype(), DType::I32);
  EXPECT_EQ(bn.weight.to_vector(), std::vector<float>(6, 1.0f));
  EXPECT_EQ(bn.running_var.to_vector(), std::vector<float>(6, 1.0f));
  EXPECT_EQ(bn.parameters().size(), 2u);

  bn.to(DType::BF16);
  EXPECT_EQ(bn.weight.dtype(), DType::BF16);
  EXPECT_EQ(bn.bias.dtype(), DType::BF16);
  EXPECT_EQ(bn.running_mean.dtype(), DType::F32);
  EXPECT_EQ(bn.running_var.dtype(), DType::F32);
  EXPECT_EQ(bn.num_batches_tracked.dtype(), DType::I32);

  BatchNorm2d plain(3, 1e-5f, 0.1f, /*affine=*/false);
  EXPECT_EQ(plain.parameters().size(), 0u);
  EXPECT_FALSE(plain.weight.defined());
}
