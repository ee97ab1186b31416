// bf16 and f16 through the CPU fronts of the image path: convolution (the implicit GEMM, the
// depthwise kernel and Winograd, forward and the three gradients), batch norm (+ReLU, training and
// evaluation, forward and backward, and the pieces sync-BN runs) and max, average and adaptive
// pooling, on awkward shapes (odd channels and sizes, stride 2, padding).
//
// Two checks per output:
//  1. The staging contract, bit for bit: the half output is the f32 kernel's output on the same
//     values widened exactly to f32, rounded once (a gradient buffer starts non-zero, so what is
//     rounded is the f32 sum old + contribution). The f32 statistics (batch norm's mean, rstd and
//     running statistics) equal the f32 run's exactly.
//  2. Against a naive double reference written here, on the widened inputs: the f32 kernel sums n
//     terms, each product rounded once, in some order, so its error is at most gamma_n * S with
//     gamma_n = n v / (1 - n v), v = 2^-24, S the sum of the terms' magnitudes (Higham, "Accuracy and
//     Stability of Numerical Algorithms", 3.1); rounding that into the half dtype adds u |f32|, u the
//     unit roundoff (2^-8 bf16, 2^-11 f16), and eta, half the dtype's smallest subnormal, below its
//     normal range. So |half - exact| <= u |exact| + (1 + u) gamma_n S + eta.
//     Winograd's f32 error has its own, transform-derived bound (tests/test_conv2d_winograd.cpp);
//     where the front picks it, check 1 ties the half output to that kernel bit for bit, and the
//     double check runs on the implicit-GEMM shapes only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "dist/single_process_communicator.h"
#include "dist/sync_batchnorm.h"
#include "ops/batchnorm.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/pool.h"
#include "tensor/random.h"
#include "tests/half_cpu_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

class HalfCpuCnnOps : public test::HalfCpuOpsTest {};

using test::half_subnormal;
using test::half_unit_roundoff;
using test::widened;
std::vector<double> as_double(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  return std::vector<double>(v.begin(), v.end());
}

// Check 1: the half tensor holds the f32 result rounded once.
void expect_staged(const Tensor& half, const Tensor& f32, const std::string& what) {
  ASSERT_NE(half.dtype(), DType::F32) << what << " should be stored in half precision";
  ASSERT_EQ(f32.dtype(), DType::F32) << what;
  EXPECT_EQ(half.to_vector(), f32.to(half.dtype()).to_vector()) << what;
}

void expect_bitwise_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.dtype(), DType::F32) << what << " is an f32 statistic";
  EXPECT_EQ(a.to_vector(), b.to_vector()) << what;
}

// A double-precision sum per element, with the sum of its terms' magnitudes and their number.
struct Sums {
  std::vector<double> value, magnitude;
  std::vector<int64_t> terms;
  explicit Sums(const std::vector<double>& start)
      : value(start), magnitude(start.size()), terms(start.size(), 0) {
    for (size_t i = 0; i < start.size(); i++) {  // a prefilled gradient: one more addition
      magnitude[i] = std::fabs(start[i]);
      terms[i] = start[i] != 0.0;
    }
  }
  void add(int64_t i, double v) {
    value[i] += v;
    magnitude[i] += std::fabs(v);
    terms[i]++;
  }
};

// Check 2: |half - exact| <= u |exact| + (1 + u) gamma_n S + eta, per element. `extra` roundings
// per element beyond the sum's terms (a bias add, a final scaling).
void expect_within_bound(const Tensor& half, const Sums& want, int64_t extra, const std::string& what) {
  const std::vector<float> got = half.to_vector();
  ASSERT_EQ(got.size(), want.value.size()) << what;
  const double u = half_unit_roundoff(half.dtype()), eta = half_subnormal(half.dtype()), v = std::ldexp(1.0, -24);
  int reported = 0;
  for (size_t i = 0; i < got.size(); i++) {
    const double n = static_cast<double>(want.terms[i] + extra);
    const double bound = u * std::fabs(want.value[i]) + (1 + u) * n * v / (1 - n * v) * want.magnitude[i] + eta;
    if (!(std::fabs(got[i] - want.value[i]) <= bound) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", want " << want.value[i] << " (bound " << bound
                    << ")";
  }
}

// ---- convolution ------------------------------------------------------------------------------

struct ConvCase {
  const char* name;
  int64_t N, H, W, C, K, R, S;
  Conv2dParams p;
  ops::ConvAlgo algo;  // what the front picks for the forward and input gradient (TG_CONV_ALGO=auto)
};

Conv2dParams conv_params(int64_t stride, int64_t pad, int64_t groups) {
  Conv2dParams p;
  p.stride_h = p.stride_w = stride, p.pad_h = p.pad_w = pad, p.groups = groups;
  return p;
}

// The implicit GEMM (stride 2, odd everything), the depthwise kernel (groups == C == K) and
// Winograd (3x3 stride 1, >= 16 channels in and out), each with a bias.
const ConvCase kConvCases[] = {
    {"implicit GEMM 3x3 stride2 pad1 C5 K7", 2, 9, 7, 5, 7, 3, 3, conv_params(2, 1, 1), ops::ConvAlgo::Im2col},
    {"implicit GEMM 2x3 pad1 groups3 C9 K6", 1, 5, 8, 9, 6, 2, 3, conv_params(1, 1, 3), ops::ConvAlgo::Im2col},
    {"depthwise 3x3 stride2 pad1 C7", 2, 7, 9, 7, 7, 3, 3, conv_params(2, 1, 7), ops::ConvAlgo::Im2col},
    {"winograd 3x3 pad1 C17 K19", 1, 7, 9, 17, 19, 3, 3, conv_params(1, 1, 1), ops::ConvAlgo::Winograd},
};

// term(out_index, x_index, weight_index) for every product of the convolution: the definition.
template <class Term>
void for_each_conv_term(const ConvCase& c, int64_t P, int64_t Q, Term term) {
  const int64_t Cg = c.C / c.p.groups, Kg = c.K / c.p.groups;
  for (int64_t n = 0; n < c.N; n++)
    for (int64_t oh = 0; oh < P; oh++)
      for (int64_t ow = 0; ow < Q; ow++)
        for (int64_t k = 0; k < c.K; k++)
          for (int64_t r = 0; r < c.R; r++)
            for (int64_t s = 0; s < c.S; s++) {
              const int64_t h = oh * c.p.stride_h - c.p.pad_h + r, w = ow * c.p.stride_w - c.p.pad_w + s;
              if (h < 0 || h >= c.H || w < 0 || w >= c.W) continue;
              for (int64_t ci = 0; ci < Cg; ci++)
                term(((n * P + oh) * Q + ow) * c.K + k, ((n * c.H + h) * c.W + w) * c.C + k / Kg * Cg + ci,
                     ((k * Cg + ci) * c.R + r) * c.S + s);
            }
}

TEST_P(HalfCpuCnnOps, ConvolutionEveryAlgorithmForwardAndGradients) {
  Generator gen(1450);
  for (const ConvCase& c : kConvCases) {
    const std::string name = c.name;
    Tensor x = draw({c.N, c.H, c.W, c.C}, gen), w = draw({c.K, c.C / c.p.groups, c.R, c.S}, gen, 0.5f);
    Tensor b = draw({c.K}, gen);
    ASSERT_EQ(ops::conv2d_algorithm(x, w, c.p, ops::ConvPass::Forward), c.algo) << name;
    ASSERT_EQ(ops::conv2d_algorithm(x, w, c.p, ops::ConvPass::InputGradient), c.algo) << name;
    const Shape out_shape = ops::conv2d_output_shape(x, w, c.p);
    const int64_t P = out_shape[1], Q = out_shape[2];

    Tensor out = empty_half(out_shape), out32 = Tensor::empty(out_shape);
    ops::conv2d_forward(out, x, w, b, c.p);
    ops::conv2d_forward(out32, widened(x), widened(w), widened(b), c.p);
    expect_staged(out, out32, name + " forward");

    Tensor dout = draw(out_shape, gen), dx = draw(x.shape(), gen), dw = draw(w.shape(), gen), db = draw({c.K}, gen);
    Tensor dx32 = widened(dx), dw32 = widened(dw), db32 = widened(db);
    const Tensor dx0 = dx.to(DType::F32), dw0 = dw.to(DType::F32), db0 = db.to(DType::F32);
    ops::conv2d_backward_input(dx, dout, w, c.p);
    ops::conv2d_backward_input(dx32, widened(dout), widened(w), c.p);
    expect_staged(dx, dx32, name + " dx");
    ops::conv2d_backward_weight(dw, db, dout, x, c.p);
    ops::conv2d_backward_weight(dw32, db32, widened(dout), widened(x), c.p);
    expect_staged(dw, dw32, name + " dweight");
    expect_staged(db, db32, name + " dbias");

    // The double reference on the same (half) values.
    const std::vector<double> xv = as_double(x), wv = as_double(w), bv = as_double(b), gv = as_double(dout);
    Sums want_out(std::vector<double>(out.numel(), 0.0)), want_dx(as_double(dx0)), want_dw(as_double(dw0)),
        want_db(as_double(db0));
    for (int64_t i = 0; i < out.numel(); i++) want_out.add(i, bv[i % c.K]);
    for (int64_t i = 0; i < dout.numel(); i++) want_db.add(i % c.K, gv[i]);
    for_each_conv_term(c, P, Q, [&](int64_t oi, int64_t xi, int64_t wi) {
      want_out.add(oi, xv[xi] * wv[wi]);
      want_dx.add(xi, gv[oi] * wv[wi]);
      want_dw.add(wi, gv[oi] * xv[xi]);
    });
    if (c.algo == ops::ConvAlgo::Im2col) {
      expect_within_bound(out, want_out, 0, name + " forward vs double");
      expect_within_bound(dx, want_dx, 0, name + " dx vs double");
    }
    expect_within_bound(dw, want_dw, 0, name + " dweight vs double");  // always the implicit GEMM
    expect_within_bound(db, want_db, 0, name + " dbias vs double");
  }
}

// ---- batch norm -------------------------------------------------------------------------------

// Per channel of x (M, C) in double: the mean, and the biased variance.
void channel_moments(const std::vector<double>& x, int64_t M, int64_t C, std::vector<double>& mean,
                     std::vector<double>& var) {
  mean.assign(C, 0.0);
  var.assign(C, 0.0);
  for (int64_t i = 0; i < M * C; i++) mean[i % C] += x[i] / static_cast<double>(M);
  for (int64_t i = 0; i < M * C; i++) var[i % C] += (x[i] - mean[i % C]) * (x[i] - mean[i % C]) / static_cast<double>(M);
}

TEST_P(HalfCpuCnnOps, BatchNormTrainingAndEvalWithAndWithoutReluForwardAndBackward) {
  Generator gen(1451);
  const int64_t N = 2, H = 5, W = 3, C = 13, M = N * H * W;
  const float momentum = 0.1f, eps = 1e-5f;
  for (bool training : {true, false})
    for (bool relu : {false, true}) {
      const std::string name = std::string(training ? "training" : "eval") + (relu ? " + relu" : "");
      // An offset mean: the statistics must centre before they square.
      Tensor x = draw({N, H, W, C}, gen, 2.0f), wt = draw({C}, gen), bias = draw({C}, gen);
      ops::add_forward(x, x, Tensor::full({C}, 3.0f, half()));
      Tensor run_mean = Tensor::randn({C}, &gen), run_var = Tensor::rand({C}, &gen);
      ops::add_forward(run_var, run_var, Tensor::full({C}, 0.5f));
      Tensor run_mean32 = run_mean.clone(), run_var32 = run_var.clone();
      Tensor out = empty_half(x.shape()), mean = Tensor::empty({C}), rstd = Tensor::empty({C});
      Tensor out32 = Tensor::empty(x.shape()), mean32 = Tensor::empty({C}), rstd32 = Tensor::empty({C});
      ops::batchnorm_forward(out, mean, rstd, x, wt, bias, run_mean, run_var, training, momentum, eps, relu);
      ops::batchnorm_forward(out32, mean32, rstd32, widened(x), widened(wt), widened(bias), run_mean32, run_var32,
                             training, momentum, eps, relu);
      expect_staged(out, out32, name + " out");
      expect_bitwise_equal(mean, mean32, name + " mean");
      expect_bitwise_equal(rstd, rstd32, name + " rstd");
      expect_bitwise_equal(run_mean, run_mean32, name + " running_mean");
      expect_bitwise_equal(run_var, run_var32, name + " running_var");

      // out = [relu](xhat w + b), xhat = (x - mean) rstd, in double. The f32 kernel's mean and
      // variance are sums over M values (gamma_M relative to the sums of magnitudes), the square root
      // and reciprocal a few roundings more; the error they leave in xhat w is within
      // gamma_{2M+8} |w| (|x - mean| + mean|x| + |x - mean|) rstd, and b adds one rounding. ReLU is
      // 1-Lipschitz, so the bound holds through it.
      const std::vector<double> xv = as_double(x), wv = as_double(wt), bv = as_double(bias);
      std::vector<double> mu, var, mean_abs(C, 0.0);
      if (training) {
        channel_moments(xv, M, C, mu, var);
      } else {
        mu = as_double(run_mean);  // eval reads the running statistics, unchanged
        var = as_double(run_var);
      }
      for (int64_t i = 0; i < M * C; i++) mean_abs[i % C] += std::fabs(xv[i]) / static_cast<double>(M);
      Sums want(std::vector<double>(M * C, 0.0));
      for (int64_t i = 0; i < M * C; i++) {
        const int64_t ch = i % C;
        const double r = 1.0 / std::sqrt(var[ch] + eps), xhat = (xv[i] - mu[ch]) * r;
        double y = xhat * wv[ch] + bv[ch];
        if (relu) y = std::max(0.0, y);
        want.value[i] = y;
        want.magnitude[i] = std::fabs(wv[ch]) * r * (2 * std::fabs(xv[i] - mu[ch]) + mean_abs[ch]) + std::fabs(bv[ch]);
        want.terms[i] = 2 * M + 8;
      }
      expect_within_bound(out, want, 0, name + " out vs double");

      Tensor dout = draw(x.shape(), gen), dx = draw(x.shape(), gen), dw = draw({C}, gen), db = draw({C}, gen);
      Tensor dx32 = widened(dx), dw32 = widened(dw), db32 = widened(db);
      const std::vector<double> dx0 = as_double(dx), dw0 = as_double(dw), db0 = as_double(db);
      ops::batchnorm_backward(dx, dw, db, dout, x, wt, bias, mean, rstd, training, relu);
      ops::batchnorm_backward(dx32, dw32, db32, widened(dout), widened(x), widened(wt), widened(bias), mean32, rstd32,
                              training, relu);
      expect_staged(dx, dx32, name + " dx");
      expect_staged(dw, dw32, name + " dweight");
      expect_staged(db, db32, name + " dbias");

      // Without the ReLU (whose mask the double and f32 values may set differently at 0): dbias +=
      // sum g, dweight += sum g xhat, and in training dx += w rstd (g - dbias/M - xhat dweight/M),
      // in eval dx += w rstd g; g = dout. xhat carries the forward's relative error, so the sums'
      // terms are counted as M + 2M + 8.
      if (relu) continue;
      const std::vector<double> gv = as_double(dout), saved_mean = as_double(mean), saved_rstd = as_double(rstd);
      Sums want_db(db0), want_dw(dw0);
      std::vector<double> xhat(M * C), sum_gx_abs(C, 0.0), sum_g_abs(C, 0.0);
      for (int64_t i = 0; i < M * C; i++) {
        const int64_t ch = i % C;
        xhat[i] = (xv[i] - saved_mean[ch]) * saved_rstd[ch];
        want_db.add(ch, gv[i]);
        want_dw.add(ch, gv[i] * xhat[i]);
        sum_g_abs[ch] += std::fabs(gv[i]);
        sum_gx_abs[ch] += std::fabs(gv[i] * xhat[i]);
      }
      for (int64_t ch = 0; ch < C; ch++) want_dw.terms[ch] += 2 * M + 8;
      expect_within_bound(db, want_db, 0, name + " dbias vs double");
      expect_within_bound(dw, want_dw, 0, name + " dweight vs double");
      Sums want_dx(dx0);
      for (int64_t i = 0; i < M * C; i++) {
        const int64_t ch = i % C;
        const double scale = wv[ch] * saved_rstd[ch];
        const double sum_g = want_db.value[ch] - db0[ch], sum_gx = want_dw.value[ch] - dw0[ch];
        const double d = training ? scale * (gv[i] - sum_g / M - xhat[i] * sum_gx / M) : scale * gv[i];
        want_dx.value[i] += d;
        want_dx.magnitude[i] +=
            std::fabs(scale) * (std::fabs(gv[i]) + (training ? (sum_g_abs[ch] + std::fabs(xhat[i]) * sum_gx_abs[ch]) / M : 0));
        want_dx.terms[i] = 3 * M + 16;
      }
      expect_within_bound(dx, want_dx, 0, name + " dx vs double");
    }
}

// The pieces of the training pass that sync-BN splits over processes: the same staging contract.
TEST_P(HalfCpuCnnOps, BatchNormPiecesForSyncBn) {
  Generator gen(1452);
  const int64_t M = 23, C = 7;
  Tensor x = draw({M, C}, gen, 2.0f), wt = draw({C}, gen), bias = draw({C}, gen), dout = draw({M, C}, gen);
  std::vector<double> mean_h, m2_h, mean_f, m2_f;
  ops::batchnorm_moments(x, mean_h, m2_h);
  ops::batchnorm_moments(widened(x), mean_f, m2_f);
  EXPECT_EQ(mean_h, mean_f);
  EXPECT_EQ(m2_h, m2_f);
  std::vector<float> mean_v(C), rstd_v(C);
  for (int64_t c = 0; c < C; c++) {
    mean_v[c] = static_cast<float>(mean_f[c]);
    rstd_v[c] = static_cast<float>(1.0 / std::sqrt(m2_f[c] / M + 1e-5));
  }
  Tensor mean = Tensor::from_vector(mean_v, {C}), rstd = Tensor::from_vector(rstd_v, {C});
  Tensor out = empty_half({M, C}), out32 = Tensor::empty({M, C});
  ops::batchnorm_normalise(out, x, wt, bias, mean, rstd, true);
  ops::batchnorm_normalise(out32, widened(x), widened(wt), widened(bias), mean, rstd, true);
  expect_staged(out, out32, "normalise");
  std::vector<double> g_h, gx_h, g_f, gx_f;
  ops::batchnorm_gradient_sums(dout, x, wt, bias, mean, rstd, true, g_h, gx_h);
  ops::batchnorm_gradient_sums(widened(dout), widened(x), widened(wt), widened(bias), mean, rstd, true, g_f, gx_f);
  EXPECT_EQ(g_h, g_f);
  EXPECT_EQ(gx_h, gx_f);
  Tensor dx = draw({M, C}, gen), dx32 = widened(dx);
  ops::batchnorm_input_gradient(dx, dout, x, wt, bias, mean, rstd, g_f, gx_f, 2.0 * M, true);
  ops::batchnorm_input_gradient(dx32, widened(dout), widened(x), widened(wt), widened(bias), mean, rstd, g_f, gx_f,
                                2.0 * M, true);
  expect_staged(dx, dx32, "input_gradient");
}

// sync-BN (--sync-bn) on one rank, through autograd: the output and the gradients of x, weight and
// bias are the f32 run's rounded once; the running statistics stay f32 and equal.
TEST_P(HalfCpuCnnOps, SyncBatchNormOnOneRank) {
  Generator gen(1456);
  const int64_t N = 3, H = 3, W = 5, C = 11;
  dist::SingleProcessCommunicator comm;
  Tensor x = draw({N, H, W, C}, gen, 2.0f), wt = draw({C}, gen), bias = draw({C}, gen), dy = draw({N, H, W, C}, gen);
  Tensor x32 = widened(x), wt32 = widened(wt), bias32 = widened(bias);
  for (Tensor* t : {&x, &wt, &bias, &x32, &wt32, &bias32}) t->requires_grad_();
  Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C}), rm32 = Tensor::zeros({C}), rv32 = Tensor::ones({C});
  Tensor y = dist::sync_batch_norm(x, wt, bias, rm, rv, 0.1f, 1e-5f, true, comm);
  Tensor y32 = dist::sync_batch_norm(x32, wt32, bias32, rm32, rv32, 0.1f, 1e-5f, true, comm);
  expect_staged(y, y32, "sync_batch_norm out");
  expect_bitwise_equal(rm, rm32, "sync_batch_norm running_mean");
  expect_bitwise_equal(rv, rv32, "sync_batch_norm running_var");
  backward(y, dy);
  backward(y32, widened(dy));
  expect_staged(x.grad(), x32.grad(), "sync_batch_norm dx");
  expect_staged(wt.grad(), wt32.grad(), "sync_batch_norm dweight");
  expect_staged(bias.grad(), bias32.grad(), "sync_batch_norm dbias");
}

// ---- pooling ----------------------------------------------------------------------------------

Pool2dParams pool_params(int64_t kernel, int64_t stride, int64_t pad, bool count_include_pad = true) {
  Pool2dParams p;
  p.kernel_h = p.kernel_w = kernel, p.stride_h = p.stride_w = stride, p.pad_h = p.pad_w = pad;
  p.count_include_pad = count_include_pad;
  return p;
}

TEST_P(HalfCpuCnnOps, MaxPoolForwardIsExactAndItsBackwardAddsOnce) {
  Generator gen(1453);
  const int64_t N = 2, H = 7, W = 9, C = 5;
  const Pool2dParams p = pool_params(3, 2, 1);  // overlapping windows: an input may take several gradients
  Tensor x = draw({N, H, W, C}, gen);
  const Shape pooled = ops::pool2d_output_shape("max_pool2d", x, p, true);
  Tensor out = empty_half(pooled), argmax = Tensor::empty(pooled, DType::I32);
  Tensor out32 = Tensor::empty(pooled), argmax32 = Tensor::empty(pooled, DType::I32);
  ops::maxpool2d_forward(out, argmax, x, p);
  ops::maxpool2d_forward(out32, argmax32, widened(x), p);
  expect_staged(out, out32, "max_pool2d out");
  EXPECT_EQ(argmax.to_vector(), argmax32.to_vector());
  // The maximum of half values is one of them: exact. argmax points at it.
  const std::vector<double> xv = as_double(x);
  const std::vector<float> outv = out.to_vector(), am = argmax.to_vector();
  const int64_t P = pooled[1], Q = pooled[2];
  for (int64_t i = 0; i < out.numel(); i++) {
    const int64_t c = i % C, n = i / (P * Q * C);
    const int64_t ph = i / (Q * C) % P, pw = i / C % Q;
    double want = -INFINITY;
    for (int64_t h = std::max<int64_t>(ph * 2 - 1, 0); h < std::min<int64_t>(ph * 2 + 2, H); h++)
      for (int64_t w = std::max<int64_t>(pw * 2 - 1, 0); w < std::min<int64_t>(pw * 2 + 2, W); w++)
        want = std::max(want, xv[((n * H + h) * W + w) * C + c]);
    ASSERT_EQ(outv[i], want) << "max_pool2d out[" << i << "]";
    ASSERT_EQ(xv[((n * H * W) + static_cast<int64_t>(am[i])) * C + c], want) << "argmax[" << i << "]";
  }

  Tensor dout = draw(pooled, gen), dx = draw(x.shape(), gen), dx32 = widened(dx);
  Sums want(as_double(dx));
  ops::maxpool2d_backward(dx, dout, argmax);
  ops::maxpool2d_backward(dx32, widened(dout), argmax32);
  expect_staged(dx, dx32, "max_pool2d dx");
  const std::vector<double> gv = as_double(dout);
  for (int64_t i = 0; i < dout.numel(); i++) {
    const int64_t c = i % C, n = i / (P * Q * C);
    want.add((n * H * W + static_cast<int64_t>(am[i])) * C + c, gv[i]);
  }
  expect_within_bound(dx, want, 0, "max_pool2d dx vs double");
}

// Average pooling with and without the padding in the divisor, and adaptive pooling to 3x2 (bins
// that overlap) and to 1x1 (the global pooling of the classifier head).
TEST_P(HalfCpuCnnOps, AverageAndAdaptivePoolingForwardAndBackward) {
  Generator gen(1454);
  const int64_t N = 2, H = 7, W = 9, C = 5;
  struct Case {
    std::string name;
    Shape pooled;
    // The window of output (ph, pw) as [h0, h1) x [w0, w1) and its divisor.
    std::function<void(int64_t, int64_t, int64_t*, double*)> window;
  };
  std::vector<Case> cases;
  for (bool include_pad : {true, false}) {
    const Pool2dParams p = pool_params(3, 2, 1, include_pad);
    Tensor probe = Tensor::empty({N, H, W, C});
    cases.push_back({std::string("avg_pool2d count_include_pad=") + (include_pad ? "1" : "0"),
                     ops::pool2d_output_shape("avg_pool2d", probe, p, false),
                     [include_pad, H, W](int64_t ph, int64_t pw, int64_t* b, double* divisor) {
                       const int64_t h0 = ph * 2 - 1, w0 = pw * 2 - 1, h1 = std::min(h0 + 3, H + 1),
                                     w1 = std::min(w0 + 3, W + 1);
                       b[0] = std::max<int64_t>(h0, 0), b[1] = std::min(h1, H);
                       b[2] = std::max<int64_t>(w0, 0), b[3] = std::min(w1, W);
                       *divisor = include_pad ? double((h1 - h0) * (w1 - w0)) : double((b[1] - b[0]) * (b[3] - b[2]));
                     }});
  }
  for (auto [P, Q] : {std::pair<int64_t, int64_t>{3, 2}, {1, 1}})
    cases.push_back({"adaptive_avg_pool2d " + std::to_string(P) + "x" + std::to_string(Q), {N, P, Q, C},
                     [P = P, Q = Q, H, W](int64_t ph, int64_t pw, int64_t* b, double* divisor) {
                       b[0] = ph * H / P, b[1] = ((ph + 1) * H + P - 1) / P;
                       b[2] = pw * W / Q, b[3] = ((pw + 1) * W + Q - 1) / Q;
                       *divisor = double((b[1] - b[0]) * (b[3] - b[2]));
                     }});
  for (size_t k = 0; k < cases.size(); k++) {
    const Case& c = cases[k];
    const bool adaptive = k >= 2;
    const Pool2dParams p = pool_params(3, 2, 1, k == 0);
    Tensor x = draw({N, H, W, C}, gen);
    Tensor out = empty_half(c.pooled), out32 = Tensor::empty(c.pooled);
    if (adaptive) {
      ops::adaptive_avgpool2d_forward(out, x);
      ops::adaptive_avgpool2d_forward(out32, widened(x));
    } else {
      ops::avgpool2d_forward(out, x, p);
      ops::avgpool2d_forward(out32, widened(x), p);
    }
    expect_staged(out, out32, c.name + " out");
    Tensor dout = draw(c.pooled, gen), dx = draw(x.shape(), gen), dx32 = widened(dx);
    Sums want_dx(as_double(dx));
    if (adaptive) {
      ops::adaptive_avgpool2d_backward(dx, dout);
      ops::adaptive_avgpool2d_backward(dx32, widened(dout));
    } else {
      ops::avgpool2d_backward(dx, dout, p);
      ops::avgpool2d_backward(dx32, widened(dout), p);
    }
    expect_staged(dx, dx32, c.name + " dx");

    // The kernels multiply by the rounded reciprocal of the window's count: two roundings more.
    const std::vector<double> xv = as_double(x), gv = as_double(dout);
    const int64_t P = c.pooled[1], Q = c.pooled[2];
    Sums want_out(std::vector<double>(out.numel(), 0.0));
    for (int64_t i = 0; i < out.numel(); i++) {
      const int64_t ch = i % C, n = i / (P * Q * C), ph = i / (Q * C) % P, pw = i / C % Q;
      int64_t b[4];
      double divisor;
      c.window(ph, pw, b, &divisor);
      for (int64_t h = b[0]; h < b[1]; h++)
        for (int64_t w = b[2]; w < b[3]; w++) {
          const int64_t xi = ((n * H + h) * W + w) * C + ch;
          want_out.add(i, xv[xi] / divisor);
          want_dx.add(xi, gv[i] / divisor);
        }
    }
    expect_within_bound(out, want_out, 2, c.name + " out vs double");
    expect_within_bound(dx, want_dx, 2, c.name + " dx vs double");
  }
}

// ---- what is refused --------------------------------------------------------------------------

// Every dtype but f32, bf16 and f16 is refused by name, as are mixed dtypes and half statistics
// (batch norm's statistics stay f32 whatever x is, as on CUDA).
TEST_P(HalfCpuCnnOps, WhatTheFrontsRefuse) {
  Generator gen(1455);
  Tensor x = draw({1, 5, 5, 2}, gen), w = draw({3, 2, 3, 3}, gen);
  Tensor ints = Tensor::from_ints(std::vector<int32_t>(50, 1), {1, 5, 5, 2});
  Tensor conv_out = empty_half({1, 3, 3, 3});
  EXPECT_ERROR_MENTIONS(ops::conv2d_forward(conv_out, ints, w, Tensor(), Conv2dParams{}), "conv2d", "x", "i32",
                        "expected f32, bf16 or f16");
  EXPECT_ERROR_MENTIONS(ops::conv2d_forward(conv_out, x, widened(w), Tensor(), Conv2dParams{}), "conv2d", "weight",
                        "f32", dtype_name(half()), "must match");
  Tensor conv_out32 = Tensor::empty({1, 3, 3, 3});
  EXPECT_ERROR_MENTIONS(ops::conv2d_forward(conv_out32, x, w, Tensor(), Conv2dParams{}), "conv2d", "out", "f32",
                        dtype_name(half()), "must match");

  Tensor out = empty_half(x.shape()), mean = Tensor::empty({2}), rstd = Tensor::empty({2});
  Tensor run_mean = Tensor::zeros({2}), run_var = Tensor::ones({2}), half_var = Tensor::ones({2}, half());
  EXPECT_ERROR_MENTIONS(ops::batchnorm_forward(out, mean, rstd, x, Tensor(), Tensor(), run_mean, half_var, true, 0.1f,
                                               1e-5f, false),
                        "batch_norm", "running_var", dtype_name(half()), "expected f32");
  Tensor half_mean = Tensor::empty({2}, half());
  EXPECT_ERROR_MENTIONS(ops::batchnorm_forward(out, half_mean, rstd, x, Tensor(), Tensor(), run_mean, run_var, true,
                                               0.1f, 1e-5f, false),
                        "batch_norm", "mean", dtype_name(half()), "expected f32");
  Tensor int_out = Tensor::empty({1, 5, 5, 2}, DType::I32);
  EXPECT_ERROR_MENTIONS(ops::batchnorm_forward(int_out, mean, rstd, ints, Tensor(), Tensor(), run_mean, run_var, true,
                                               0.1f, 1e-5f, false),
                        "batch_norm", "x", "i32", "expected f32, bf16 or f16");

  Tensor pooled = Tensor::empty({1, 2, 2, 2}, DType::I32), argmax = Tensor::empty({1, 2, 2, 2}, DType::I32);
  EXPECT_ERROR_MENTIONS(ops::maxpool2d_forward(pooled, argmax, ints, pool_params(2, 2, 0)), "max_pool2d", "x", "i32",
                        "expected f32, bf16 or f16");
  Tensor pooled32 = Tensor::empty({1, 2, 2, 2});
  EXPECT_ERROR_MENTIONS(ops::avgpool2d_forward(pooled32, x, pool_params(2, 2, 0)), "avg_pool2d", "out", "f32",
                        dtype_name(half()), "must match");
}

INSTANTIATE_TEST_SUITE_P(, HalfCpuCnnOps, ::testing::Values(DType::BF16, DType::F16),
                         [](const ::testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); });

}  // namespace
