// Causal self-attention: forward, log-sum-exp and gradient against a naive double-precision
// reference that builds the full T x T softmax; gradcheck; causality; determinism; bad input.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/attention.h"
#include "autograd/functions/view.h"
#include "autograd/gradcheck.h"
#include "ops/attention.h"
#include "tensor/tensor.h"
#include "cpu_isa_test_util.h"

using namespace tg;

namespace {

struct Case {
  int64_t B, T, NH, HS;
  std::string str() const {
    return "B=" + std::to_string(B) + " T=" + std::to_string(T) + " NH=" + std::to_string(NH) + " HS=" + std::to_string(HS);
  }
};

// The textbook computation, in double: per (b, h) the full masked score matrix, its softmax, then
// out = P V; with dout given, the analytic gradient
//   dV = P^T dO,  dP = dO V^T,  dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik),  dQ = s dS K,  dK = s dS^T Q.
struct Reference {
  std::vector<double> out;   // (B, T, C)
  std::vector<double> lse;   // (B, NH, T)
  std::vector<double> dqkv;  // (B, T, 3C), only when dout was given
};

Reference naive_attention(const std::vector<float>& qkv, const Case& c, const std::vector<float>* dout = nullptr) {
  const int64_t C = c.NH * c.HS, T = c.T, HS = c.HS;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  Reference r;
  r.out.assign(c.B * T * C, 0.0);
  r.lse.assign(c.B * c.NH * T, 0.0);
  if (dout) r.dqkv.assign(c.B * T * 3 * C, 0.0);
  std::vector<double> P(T * T), dP(T * T);
  for (int64_t b = 0; b < c.B; b++)
    for (int64_t h = 0; h < c.NH; h++) {
      auto q = [&](int64_t t, int64_t d) { return double(qkv[(b * T + t) * 3 * C + h * HS + d]); };
      auto k = [&](int64_t t, int64_t d) { return double(qkv[(b * T + t) * 3 * C + C + h * HS + d]); };
      auto v = [&](int64_t t, int64_t d) { return double(qkv[(b * T + t) * 3 * C + 2 * C + h * HS + d]); };
      for (int64_t i = 0; i < T; i++) {
        double row_max = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= i; j++) {
          double s = 0;
          for (int64_t d = 0; d < HS; d++) s += q(i, d) * k(j, d);
          P[i * T + j] = s * scale;
          row_max = std::max(row_max, s * scale);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; j++) sum += std::exp(P[i * T + j] - row_max);
        for (int64_t j = 0; j <= i; j++) P[i * T + j] = std::exp(P[i * T + j] - row_max) / sum;
        r.lse[(b * c.NH + h) * T + i] = row_max + std::log(sum);
        for (int64_t d = 0; d < HS; d++) {
          double o = 0;
          for (int64_t j = 0; j <= i; j++) o += P[i * T + j] * v(j, d);
          r.out[(b * T + i) * C + h * HS + d] = o;
        }
      }
      if (!dout) continue;
      auto go = [&](int64_t t, int64_t d) { return double((*dout)[(b * T + t) * C + h * HS + d]); };
      auto dq = [&](int64_t t, int64_t d) -> double& { return r.dqkv[(b * T + t) * 3 * C + h * HS + d]; };
      auto dk = [&](int64_t t, int64_t d) -> double& { return r.dqkv[(b * T + t) * 3 * C + C + h * HS + d]; };
      auto dv = [&](int64_t t, int64_t d) -> double& { return r.dqkv[(b * T + t) * 3 * C + 2 * C + h * HS + d]; };
      for (int64_t i = 0; i < T; i++) {
        double row_term = 0;
        for (int64_t j = 0; j <= i; j++) {
          double g = 0;
          for (int64_t d = 0; d < HS; d++) g += go(i, d) * v(j, d);
          dP[i * T + j] = g;
          row_term += P[i * T + j] * g;
        }
        for (int64_t j = 0; j <= i; j++) {
          const double p = P[i * T + j], ds = p * (dP[i * T + j] - row_term);
          for (int64_t d = 0; d < HS; d++) {
            dv(j, d) += p * go(i, d);
            dq(i, d) += scale * ds * k(j, d);
            dk(j, d) += scale * ds * q(i, d);
          }
        }
      }
    }
  return r;
}

template <class Got>
double relative_error(const Got& got, const std::vector<double>& ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    diff += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff / norm);
}

Tensor random_qkv(const Case& c, uint64_t seed, float magnitude = 1.0f) {
  Generator gen(seed);
  Tensor qkv = Tensor::randn({c.B, c.T, 3 * c.NH * c.HS}, &gen);
  float* p = qkv.data<float>();
  for (int64_t i = 0; i < qkv.numel(); i++) p[i] *= magnitude;
  return qkv;
}

// Every listed T and HS, with B and NH cycling through 1..3 and 1..4 so all of them appear, with
// T on both sides of the 64-wide tiles (1, 2, 7 inside one tile; 65 and 130 just past one and two).
std::vector<Case> awkward_cases() {
  std::vector<Case> cases;
  int n = 0;
  for (int64_t T : {1, 2, 7, 33, 65, 130})
    for (int64_t HS : {1, 3, 8, 16, 32, 64}) {
      cases.push_back({1 + n % 3, T, 1 + (n / 3) % 4, HS});
      n++;
    }
  return cases;
}

// f32 tolerance for the forward, relative (||out - ref|| / ||ref||). Each output element is a
// dot product of at most 130 probabilities with values, each score one of at most 64 products;
// with rounding errors of random sign that is about sqrt(130) * 2^-24 ~ 7e-7 relative at worst
// (measured: at most 2.2e-7 over these cases). A wrong mask, scale or rescale shows as 1e-3 or
// more.
constexpr double kForwardTolerance = 2e-6;
// The gradient chains three such products (dP, then dS = P (dP - D), then dQ, dK or dV); the
// subtraction cancels part of dP, so the bound doubles (measured: at most 3.6e-7).
constexpr double kBackwardTolerance = 4e-6;

}  // namespace

// Every test of Attention runs at each instruction-set level of the CPU kernels.
class Attention : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Attention);

TEST_P(Attention, ForwardMatchesNaiveReference) {
  uint64_t seed = 1;
  for (const Case& c : awkward_cases()) {
    Tensor qkv = random_qkv(c, seed++);
    Tensor out = causal_self_attention(qkv, c.NH);
    ASSERT_EQ(out.shape(), (Shape{c.B, c.T, c.NH * c.HS})) << c.str();
    Reference ref = naive_attention(qkv.to_vector(), c);
    EXPECT_LT(relative_error(out.to_vector(), ref.out), kForwardTolerance) << c.str();
  }
}

TEST_P(Attention, LogSumExpMatchesNaiveReference) {
  // The backward rebuilds every probability from lse, so it is checked on its own. lse is of
  // order 1..6 (ulp 2.4e-7 .. 4.8e-7) and sums at most 130 exps: 4e-6 absolute is ~10 ulps
  // (measured: at most 7.3e-7).
  uint64_t seed = 100;
  for (const Case& c : awkward_cases()) {
    Tensor qkv = random_qkv(c, seed++);
    Tensor out = Tensor::empty({c.B, c.T, c.NH * c.HS}), lse = Tensor::empty({c.B, c.NH, c.T});
    ops::attention_forward(out, lse, qkv, c.NH);
    Reference ref = naive_attention(qkv.to_vector(), c);
    std::vector<float> got = lse.to_vector();
    for (size_t i = 0; i < got.size(); i++) ASSERT_NEAR(got[i], ref.lse[i], 4e-6) << c.str() << " row " << i;
  }
}

TEST_P(Attention, ForwardStableWithLargeScores) {
  // Inputs 6x larger make scores of standard deviation 36 (up to ~200): the row max jumps between
  // key blocks, so the online rescaling must be right, and exp must not overflow. A score's own
  // f32 error grows with its size (~|S| * 2^-24, 1e-5 at |S| = 200) and the softmax passes it on
  // to the probabilities, so the tolerance is 5x the forward's (measured: at most 1.4e-6); a
  // missed rescale would be off by a factor e^(jump in the max), i.e. completely.
  for (const Case& c : {Case{2, 130, 2, 16}, Case{1, 200, 1, 64}}) {
    Tensor qkv = random_qkv(c, 7, 6.0f);
    Tensor out = causal_self_attention(qkv, c.NH);
    Reference ref = naive_attention(qkv.to_vector(), c);
    std::vector<float> got = out.to_vector();
    for (float x : got) ASSERT_TRUE(std::isfinite(x)) << c.str();
    EXPECT_LT(relative_error(got, ref.out), 5 * kForwardTolerance) << c.str();
  }
}

TEST_P(Attention, BackwardMatchesNaiveGradient) {
  uint64_t seed = 200;
  for (const Case& c : awkward_cases()) {
    Tensor qkv = random_qkv(c, seed++);
    qkv.requires_grad_(true);
    Generator gen(seed++);
    Tensor dout = Tensor::randn({c.B, c.T, c.NH * c.HS}, &gen);
    backward(causal_self_attention(qkv, c.NH), dout);
    std::vector<float> dout_values = dout.to_vector();
    Reference ref = naive_attention(qkv.to_vector(), c, &dout_values);
    ASSERT_TRUE(qkv.grad().defined()) << c.str();
    EXPECT_LT(relative_error(qkv.grad().to_vector(), ref.dqkv), kBackwardTolerance) << c.str();
  }
}

TEST_P(Attention, BackwardAddsIntoTheGradientBuffer) {
  // The engine's convention: the kernel adds, never overwrites. The two results differ only by
  // rounding (the dQ update is a fused multiply-add into the buffer), ~1 ulp; an overwrite would
  // be off by the whole 0.5.
  Case c{2, 70, 3, 8};
  Tensor qkv = random_qkv(c, 11);
  Tensor out = Tensor::empty({c.B, c.T, 24}), lse = Tensor::empty({c.B, c.NH, c.T});
  ops::attention_forward(out, lse, qkv, c.NH);
  Generator gen(12);
  Tensor dout = Tensor::randn(out.shape(), &gen);
  Tensor from_zero = Tensor::zeros(qkv.shape()), from_half = Tensor::full(qkv.shape(), 0.5f);
  ops::attention_backward(from_zero, dout, qkv, out, lse, c.NH);
  ops::attention_backward(from_half, dout, qkv, out, lse, c.NH);
  std::vector<float> g = from_zero.to_vector(), h = from_half.to_vector();
  for (size_t i = 0; i < g.size(); i++) ASSERT_NEAR(h[i], 0.5f + g[i], 1e-6 * (1 + std::fabs(g[i]))) << "element " << i;
}

TEST_P(Attention, GradCheck) {
  for (const Case& c : {Case{2, 5, 2, 3}, Case{1, 7, 3, 2}, Case{3, 4, 1, 1}, Case{1, 9, 1, 5}}) {
    Tensor qkv = random_qkv(c, 21).requires_grad_(true);
    int64_t NH = c.NH;
    std::string failure = gradcheck([NH](const std::vector<Tensor>& x) { return causal_self_attention(x[0], NH); }, {qkv});
    EXPECT_EQ(failure, "") << c.str();
  }
}

TEST_P(Attention, GradCheckThroughNonContiguousInput) {
  // qkv given as a transposed view: the function makes it contiguous and the gradient flows
  // back through the view into the (B, 3C, T) leaf.
  Generator gen(31);
  Tensor leaf = Tensor::randn({2, 12, 6}, &gen).requires_grad_(true);  // (B, 3C, T), C = 4, 2 heads
  std::string failure =
      gradcheck([](const std::vector<Tensor>& x) { return causal_self_attention(transpose(x[0], 1, 2), 2); }, {leaf});
  EXPECT_EQ(failure, "");
}

TEST_P(Attention, FutureKeysAndValuesDoNotChangeEarlierOutputs) {
  Case c{2, 130, 2, 8};
  const int64_t C = c.NH * c.HS;
  Tensor qkv = random_qkv(c, 41);
  std::vector<float> base = causal_self_attention(qkv, c.NH).to_vector();
  // Tile edges (0, 63, 64) and the last position, for every b and every head at once.
  for (int64_t future : {0, 33, 63, 64, 129}) {
    Tensor changed = qkv.clone();
    float* p = changed.data<float>();
    for (int64_t b = 0; b < c.B; b++)
      for (int64_t col = C; col < 3 * C; col++) p[(b * c.T + future) * 3 * C + col] += 3.0f;
    std::vector<float> got = causal_self_attention(changed, c.NH).to_vector();
    for (int64_t b = 0; b < c.B; b++) {
      for (int64_t t = 0; t < future; t++)
        for (int64_t col = 0; col < C; col++) {
          const int64_t i = (b * c.T + t) * C + col;
          ASSERT_EQ(std::memcmp(&got[i], &base[i], sizeof(float)), 0) << "t=" << t << " changed by key " << future;
        }
      // The changed position itself must see its own new key and value (the test could not
      // fail if the change went nowhere).
      bool differs = false;
      for (int64_t col = 0; col < C; col++) differs |= got[(b * c.T + future) * C + col] != base[(b * c.T + future) * C + col];
      EXPECT_TRUE(differs) << "position " << future;
    }
  }
}

TEST_P(Attention, RepeatedRunsAreBitIdentical) {
  // Each (b, h, query tile) in forward and each (b, h) in backward is summed by one thread in a
  // fixed order, so the result does not even depend on the thread count: run 2 uses one thread.
  Case c{2, 130, 3, 16};
  Tensor qkv = random_qkv(c, 51);
  Generator gen(52);
  Tensor dout = Tensor::randn({c.B, c.T, c.NH * c.HS}, &gen);
  std::vector<float> outs[3], grads[3];
  const int threads = omp_get_max_threads();
  for (int run = 0; run < 3; run++) {
    omp_set_num_threads(run == 2 ? 1 : threads);
    Tensor x = qkv.clone().requires_grad_(true);
    Tensor y = causal_self_attention(x, c.NH);
    backward(y, dout);
    outs[run] = y.to_vector();
    grads[run] = x.grad().to_vector();
  }
  omp_set_num_threads(threads);
  for (int run = 1; run < 3; run++) {
    EXPECT_EQ(std::memcmp(outs[0].data(), outs[run].data(), outs[0].size() * sizeof(float)), 0) << "run " << run;
    EXPECT_EQ(std::memcmp(grads[0].data(), grads[run].data(), grads[0].size() * sizeof(float)), 0) << "run " << run;
  }
}

TEST_P(Attention, NaNInAQueryReachesItsOutputRow) {
  // A NaN must surface (so a diverging run is caught), and only where it belongs: a NaN query at
  // t = 5 of head 0 poisons that row's head-0 outputs and nothing else.
  Case c{1, 70, 2, 4};
  Tensor qkv = random_qkv(c, 61);
  qkv.data<float>()[5 * 3 * 8 + 1] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> out = causal_self_attention(qkv, c.NH).to_vector();
  for (int64_t t = 0; t < c.T; t++)
    for (int64_t col = 0; col < 8; col++) {
      const bool expect_nan = t == 5 && col < 4;
      EXPECT_EQ(std::isnan(out[t * 8 + col]), expect_nan) << "t=" << t << " col=" << col;
    }
}

TEST_P(Attention, BadInputThrowsNamingOpAndShape) {
  auto expect_error = [](const Tensor& qkv, int64_t n_head, const std::string& shape, const std::string& detail) {
    try {
      causal_self_attention(qkv, n_head);
      ADD_FAILURE() << "no error for shape " << shape << " and n_head " << n_head;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("causal_self_attention"), std::string::npos) << message;
      EXPECT_NE(message.find(shape), std::string::npos) << message;
      EXPECT_NE(message.find(detail), std::string::npos) << message;
    }
  };
  expect_error(Tensor::zeros({4, 6}), 1, "(4, 6)", "3 dimensions");
  expect_error(Tensor::zeros({2, 5, 10}), 1, "(2, 5, 10)", "not 3C");
  expect_error(Tensor::zeros({2, 5, 36}), 5, "(2, 5, 36)", "C = 12");
  expect_error(Tensor::zeros({2, 5, 36}), 0, "n_head is 0", "positive");
  expect_error(Tensor::zeros({2, 5, 36}, DType::I32), 2, "i32", "f32");
  // The fronts check the tensors they are handed, too.
  Tensor qkv = Tensor::zeros({2, 5, 12}), out = Tensor::empty({2, 5, 3}), lse = Tensor::empty({2, 2, 5});
  try {
    ops::attention_forward(out, lse, qkv, 2);
    ADD_FAILURE() << "no error for out of the wrong shape";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out has shape (2, 5, 3), expected (2, 5, 4)"), std::string::npos) << e.what();
  }
}
