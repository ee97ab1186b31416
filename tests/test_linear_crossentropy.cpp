// The chunked output layer + cross-entropy (autograd/functions/linear_crossentropy.h): loss and
// gradients against a double-precision reference and against the unfused linear + cross_entropy,
// at sizes that leave a short last chunk, V odd, and a chunk larger than the rows; a gradcheck;
// the GPT's tied lm_head; bad input named.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/crossentropy.h"
#include "autograd/functions/linear_crossentropy.h"
#include "autograd/functions/matmul.h"
#include "autograd/gradcheck.h"
#include "nn/gpt.h"
#include "tensor/random.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

Tensor scaled_randn(const Shape& shape, float scale, Generator& gen) {
  std::vector<float> v = Tensor::randn(shape, &gen).to_vector();
  for (float& x : v) x *= scale;
  return Tensor::from_vector(v, shape);
}

// Targets in [0, V), every `ignore_every`-th (when > 0) set to -1.
Tensor random_targets(int64_t N, int64_t V, Generator& gen, int ignore_every) {
  std::vector<int32_t> t(static_cast<size_t>(N));
  for (size_t i = 0; i < t.size(); i++)
    t[i] = ignore_every > 0 && i % ignore_every == 1 ? -1 : static_cast<int32_t>(gen.below(V));
  return Tensor::from_ints(t, {N});
}

// The loss and gradients in double, and for each gradient element the same sum over absolute
// values (what a rounding error is proportional to).
struct Reference {
  double loss = 0;
  std::vector<double> dx, dw, db, dx_abs, dw_abs, db_abs;
};

Reference reference(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& targets, float smoothing) {
  const int64_t N = x.size(0), C = x.size(1), V = w.size(0);
  std::vector<float> xv = x.to_vector(), wv = w.to_vector(), bv = b.defined() ? b.to_vector() : std::vector<float>();
  std::vector<float> tf = targets.to_vector();
  int64_t count = 0;
  for (float t : tf) count += t >= 0;
  Reference r;
  r.dx.assign(N * C, 0), r.dx_abs.assign(N * C, 0), r.dw.assign(V * C, 0), r.dw_abs.assign(V * C, 0);
  r.db.assign(V, 0), r.db_abs.assign(V, 0);
  std::vector<double> z(V);
  for (int64_t i = 0; i < N; i++) {
    const int64_t t = static_cast<int64_t>(tf[i]);
    if (t < 0) continue;
    double mx = -1e300;
    for (int64_t v = 0; v < V; v++) {
      double s = bv.empty() ? 0.0 : bv[v];
      for (int64_t c = 0; c < C; c++) s += static_cast<double>(xv[i * C + c]) * wv[v * C + c];
      z[v] = s;
      mx = std::max(mx, s);
    }
    double sum = 0, mean_z = 0;
    for (int64_t v = 0; v < V; v++) sum += std::exp(z[v] - mx), mean_z += z[v] / static_cast<double>(V);
    const double lse = mx + std::log(sum);
    r.loss += ((1.0 - smoothing) * (lse - z[t]) + smoothing * (lse - mean_z)) / static_cast<double>(count);
    for (int64_t v = 0; v < V; v++) {
      const double g = (std::exp(z[v] - lse) - (1.0 - smoothing) * (v == t) - smoothing / static_cast<double>(V)) /
                       static_cast<double>(count);
      r.db[v] += g, r.db_abs[v] += std::fabs(g);
      for (int64_t c = 0; c < C; c++) {
        r.dx[i * C + c] += g * wv[v * C + c], r.dx_abs[i * C + c] += std::fabs(g * wv[v * C + c]);
        r.dw[v * C + c] += g * xv[i * C + c], r.dw_abs[v * C + c] += std::fabs(g * xv[i * C + c]);
      }
    }
  }
  return r;
}

// Every got[i] within tol * abs_sum[i] (+ a floor for sums that vanish) of want[i].
void expect_within(const Tensor& got, const std::vector<double>& want, const std::vector<double>& abs_sum, double tol,
                   const char* what) {
  std::vector<float> g = got.to_vector();
  ASSERT_EQ(g.size(), want.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < g.size(); i++)
    if (!(std::fabs(g[i] - want[i]) <= tol * (abs_sum[i] + 1e-3)) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << g[i] << ", want " << want[i] << " (bound "
                    << tol * (abs_sum[i] + 1e-3) << ")";
}

struct Case {
  int64_t N, C, V, chunk;
  bool bias;
  float smoothing;
};

}  // namespace

// Loss and gradients of x, W and b against the double reference, and the unfused path against the
// same reference with the same bound. The bound: every result is a sum of rounded f32 products
// along chains of at most K = C + V + N operations (a logit's C-term dot product, the V-term
// log-sum-exp and the V-term dx sum, the N-term dW sum and mean), so the standard bound
// gamma_K = K u (u = 2^-24) times the sum of the absolute terms holds; the factor 4 covers the
// exp/log evaluations' few ulps. Chunking changes only the order of the N-term sums.
TEST(LinearCrossEntropy, MatchesTheUnfusedPathAndADoubleReference) {
  Generator gen(91);
  const std::vector<Case> cases = {
      {13, 7, 11, 4, true, 0.0f},    // 13 rows: chunks of 4, 4, 4 and 1; V odd
      {13, 7, 11, 5, false, 0.0f},   // no bias
      {6, 5, 9, 16, true, 0.0f},     // one chunk larger than the rows
      {17, 8, 13, 3, true, 0.2f},    // label smoothing
      {10, 6, 7, 1, true, 0.0f},     // one row per chunk
  };
  for (const Case& k : cases) {
    SCOPED_TRACE("N " + std::to_string(k.N) + ", C " + std::to_string(k.C) + ", V " + std::to_string(k.V) +
                 ", chunk " + std::to_string(k.chunk) + (k.bias ? ", bias" : "") +
                 ", smoothing " + std::to_string(k.smoothing));
    Tensor x = scaled_randn({k.N, k.C}, 1.0f, gen), w = scaled_randn({k.V, k.C}, 0.7f, gen);
    Tensor b = k.bias ? scaled_randn({k.V}, 0.5f, gen) : Tensor();
    Tensor targets = random_targets(k.N, k.V, gen, 4);  // some ignored, some chunks with one fewer
    const Reference ref = reference(x, w, b, targets, k.smoothing);
    const double tol = 4.0 * static_cast<double>(k.C + k.V + k.N) * std::ldexp(1.0, -24);

    for (bool chunked : {true, false}) {
      SCOPED_TRACE(chunked ? "chunked" : "unfused");
      Tensor xl = x.clone().requires_grad_(true), wl = w.clone().requires_grad_(true);
      Tensor bl = k.bias ? b.clone().requires_grad_(true) : Tensor();
      Tensor loss = chunked ? linear_cross_entropy(xl, wl, bl, targets, k.chunk, -1, k.smoothing)
                            : cross_entropy(linear(xl, wl, bl), targets, -1, k.smoothing);
      // The loss is a mean of N terms of size ~lse: its bound scales with the loss itself.
      EXPECT_NEAR(loss.item(), ref.loss, tol * (std::fabs(ref.loss) + 1.0));
      backward(loss);
      expect_within(xl.grad(), ref.dx, ref.dx_abs, tol, "dx");
      expect_within(wl.grad(), ref.dw, ref.dw_abs, tol, "dW");
      if (k.bias) expect_within(bl.grad(), ref.db, ref.db_abs, tol, "db");
    }
  }
}

// A (B, T, C) input, an upstream gradient other than 1, and gradients accumulated onto existing
// ones: the backward scales the saved gradients and adds them.
TEST(LinearCrossEntropy, ScalesByTheUpstreamGradientAndAccumulates) {
  Generator gen(92);
  Tensor x = scaled_randn({2, 5, 6}, 1.0f, gen), w = scaled_randn({9, 6}, 0.7f, gen);
  Tensor targets = random_targets(10, 9, gen, 3).view({2, 5});
  const Reference ref = reference(x.view({10, 6}), w, Tensor(), targets.view({10}), 0.0f);
  const double tol = 4.0 * (6 + 9 + 10) * std::ldexp(1.0, -24) * 3;  // times the scale, 3
  Tensor xl = x.clone().requires_grad_(true), wl = w.clone().requires_grad_(true);
  for (int pass = 0; pass < 2; pass++)  // two backwards: 2 * 1.5 = 3 times the gradient
    backward(mul(linear_cross_entropy(xl, wl, Tensor(), targets, 3), Tensor::scalar(1.5f)));
  std::vector<double> dx3 = ref.dx, dw3 = ref.dw;
  for (double& v : dx3) v *= 3;
  for (double& v : dw3) v *= 3;
  expect_within(xl.grad().view({10, 6}), dx3, ref.dx_abs, tol, "dx");
  expect_within(wl.grad(), dw3, ref.dw_abs, tol, "dW");
}

TEST(LinearCrossEntropy, GradCheck) {
  Generator gen(93);
  Tensor x = Tensor::randn({5, 3}, &gen).requires_grad_(true), w = Tensor::randn({4, 3}, &gen).requires_grad_(true);
  Tensor b = Tensor::randn({4}, &gen).requires_grad_(true), targets = random_targets(5, 4, gen, 3);
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return linear_cross_entropy(in[0], in[1], in[2], in[3], 2); },
                      {x, w, b, targets}),
            "");
}

TEST(LinearCrossEntropy, EveryTargetIgnoredGivesZeroAndNoGradient) {
  Generator gen(94);
  Tensor x = Tensor::randn({4, 3}, &gen).requires_grad_(true), w = Tensor::randn({5, 3}, &gen).requires_grad_(true);
  Tensor targets = Tensor::from_ints({-1, -1, -1, -1}, {4});
  Tensor loss = linear_cross_entropy(x, w, Tensor(), targets, 3);
  EXPECT_EQ(loss.item(), 0.0f);
  backward(loss);
  for (float v : x.grad().to_vector()) EXPECT_EQ(v, 0.0f);
  for (float v : w.grad().to_vector()) EXPECT_EQ(v, 0.0f);
}

TEST(LinearCrossEntropy, NoGradComputesTheLossAlone) {
  Generator gen(95);
  Tensor x = Tensor::randn({7, 4}, &gen).requires_grad_(true), w = Tensor::randn({5, 4}, &gen).requires_grad_(true);
  Tensor targets = random_targets(7, 5, gen, 0);
  float with_grad = linear_cross_entropy(x, w, Tensor(), targets, 3).item();
  NoGrad no_grad;
  Tensor loss = linear_cross_entropy(x, w, Tensor(), targets, 3);
  EXPECT_EQ(loss.item(), with_grad);  // the same chunks, the same sums
  EXPECT_FALSE(loss.requires_grad());
}

TEST(LinearCrossEntropy, BadInputIsNamed) {
  Generator gen(96);
  Tensor x = Tensor::randn({4, 3}, &gen), w = Tensor::randn({5, 3}, &gen);
  Tensor targets = Tensor::from_ints({0, 1, 2, 3}, {4});
  EXPECT_ERROR_MENTIONS(linear_cross_entropy(x, w, Tensor(), targets, 0), "linear_cross_entropy",
                        "chunk_rows must be at least 1, found 0");
  EXPECT_ERROR_MENTIONS(linear_cross_entropy(x, Tensor::randn({5, 4}, &gen), Tensor(), targets, 2),
                        "linear_cross_entropy", "weight (5, 4) must be (V, C) with C = 3");
  EXPECT_ERROR_MENTIONS(linear_cross_entropy(x, w, Tensor::randn({4}, &gen), targets, 2), "linear_cross_entropy",
                        "bias");
  EXPECT_ERROR_MENTIONS(linear_cross_entropy(x, w, Tensor(), Tensor::from_ints({0, 1, 2}, {3}), 2),
                        "linear_cross_entropy", "targets");
  // The position is the target's in the whole batch, not in its chunk.
  EXPECT_ERROR_MENTIONS(linear_cross_entropy(x, w, Tensor(), Tensor::from_ints({0, 1, 2, 5}, {4}), 2),
                        "linear_cross_entropy: targets[3] = 5 is not a class index in [0, 5)");
}

// The GPT with its tied lm_head: the chunked loss and every parameter's gradient (wte.weight
// gathering both the embedding's and the lm_head's) equal the unchunked ones. Only the N-term
// sums change order (the mean and dW over B*T = 14 rows; wte's gradient adds the embedding's
// part in the same order both ways); the bound is the test above's with K = C + V + N.
TEST(LinearCrossEntropy, GptTiedHeadMatchesTheUnchunkedLoss) {
  GPTConfig config;
  config.vocab_size = 37;  // odd
  config.block_size = 8;
  config.n_layer = 1;
  config.n_head = 2;
  config.n_embd = 16;
  GPT model(config, 7);
  Generator gen(97);
  std::vector<int32_t> ids(14);
  for (int32_t& id : ids) id = static_cast<int32_t>(gen.below(37));
  Tensor idx = Tensor::from_ints(ids, {2, 7});
  Tensor targets = random_targets(14, 37, gen, 5).view({2, 7});

  auto run = [&](int64_t chunk) {
    model.set_loss_chunk(chunk);
    for (Tensor& p : model.parameters()) p.set_grad(Tensor());
    Tensor loss = model.forward_loss(idx, targets);
    backward(loss);
    std::vector<std::vector<float>> grads = {{loss.item()}};
    for (Tensor& p : model.parameters()) grads.push_back(p.grad().to_vector());
    return grads;
  };
  const std::vector<std::vector<float>> unchunked = run(0), chunked = run(4);  // 14 rows: 4, 4, 4, 2
  const double tol = 4.0 * (16 + 37 + 14) * std::ldexp(1.0, -24);
  ASSERT_EQ(unchunked.size(), chunked.size());
  for (size_t i = 0; i < unchunked.size(); i++) {
    double scale = 0;
    for (float v : unchunked[i]) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    for (size_t j = 0; j < unchunked[i].size(); j++)
      ASSERT_NEAR(chunked[i][j], unchunked[i][j], 4 * tol * (scale + 1e-6)) << "tensor " << i << "[" << j << "]";
  }
  EXPECT_THROW_WITH(model.set_loss_chunk(-1), "GPT::set_loss_chunk: tokens per chunk must be >= 0");
}
