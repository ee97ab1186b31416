// Fused softmax + cross-entropy on CUDA against the CPU kernel: loss and lse with ignored targets,
// the gradient accumulated into pre-filled buffers and written in place over the logits, all
// targets ignored, NaN propagation, misaligned rows, determinism, out-of-range targets on the GPU,
// and (CPU-runnable) the in-place front and the error for half precision on the CPU.
//
// Tolerances:
//   loss, lse (f32 outputs from the same rounded logits in every dtype): each exp is __expf, within
//     2 + 1.173 |x| ulp for x = logit - max (x >= -20 for every term that is not lost against the
//     max term): <= 25 ulp = 3e-6 relative, where the CPU is within 2 ulp; a sum of positive terms
//     keeps that relative error and log turns it into <= 3e-6 absolute on lse >= log(37) = 3.6,
//     the loss likewise. 1e-5 relative.
//   dlogits f32: exp(x - lse) with the same lse on both sides, <= 25 ulp (3e-6), the onehot term
//     rounded differently ((p - 1) s against p s - s): 1e-5. bf16 / f16: one rounding of each
//     result to the dtype, 2^-8 / 2^-11, plus that. The gradients are scaled by dloss = 64 count
//     (as a loss scaler would) so that f16 results stay normal numbers, where a rounding is relative.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/crossentropy.h"
#include "ops/crossentropy.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

constexpr double kF32Tolerance = 1e-5;
constexpr float kScale = 64.0f;  // dloss / count in the backward tests

double rounded_tolerance(DType dtype) {
  return (dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype)) + kF32Tolerance;
}

// Targets in [0, V), every third one (from the second) ignore_index.
Tensor targets_with_ignored(int64_t N, int64_t V, Generator& gen, int32_t ignore_index = -1) {
  std::vector<int32_t> t(static_cast<size_t>(N));
  for (size_t i = 0; i < t.size(); i++) t[i] = i % 3 == 1 ? ignore_index : static_cast<int32_t>(gen.below(V));
  return Tensor::from_ints(t, {N});
}

int64_t count_kept(const Tensor& targets, int32_t ignore_index) {
  int64_t count = 0;
  for (int32_t t : targets.to_int_vector()) count += t != ignore_index;
  return count;
}

// The same tensor with the target entries zeroed: the softmax part of a gradient, which the target
// entries (about -scale each) would otherwise dominate in a norm.
Tensor without_targets(const Tensor& grad, const Tensor& targets) {
  std::vector<float> g = grad.to_vector();
  std::vector<int32_t> t = targets.to_int_vector();
  const int64_t V = static_cast<int64_t>(g.size()) / static_cast<int64_t>(t.size());
  for (size_t n = 0; n < t.size(); n++)
    if (t[n] >= 0) g[n * V + t[n]] = 0.0f;
  return Tensor::from_vector(g, {static_cast<int64_t>(g.size())});
}

// Element-wise bounds (test::elementwise_close, u = 2^-24):
//   lse_n: each side sums V positive exps in f32 in its own order, within (V - 1) u of the sum
//     (relative, as the terms are positive), and its exps within 25 and 2 ulp: a relative
//     difference of 2 (V - 1) u + 27 u in the sum is that much absolute in the log; the log and
//     the add of the max round once more each (4 u relative). The norm-wise 1e-5 above is the
//     tighter statement; this one is the worst case of the reduction length.
//   loss: the mean of N per-row losses lse_n - x_t >= 0 (terms of one sign): each row's lse bound
//     on average, plus 2 N u + 8 u of the loss for the sum and the division.
test::Tolerance lse_tolerance(int64_t V) {
  const double u = std::ldexp(1.0, -24);
  return {2.0 * static_cast<double>(V - 1) * u + 27 * u, 4 * u};
}
test::Tolerance loss_tolerance(int64_t N, int64_t V, const Tensor& lse) {
  const double u = std::ldexp(1.0, -24);
  double largest = 0;
  for (float l : lse.to_vector()) largest = std::max(largest, std::fabs(static_cast<double>(l)));
  return {lse_tolerance(V).atol + lse_tolerance(V).rtol * largest, (2.0 * static_cast<double>(N) + 8) * u};
}

// dlogits_nv = start + s (p_nv - [v = t_n]), s = dloss / count, p = exp(x - lse) from the same lse
// on both sides: x - lse rounds within u |x - lse|, which exp turns into that much relative, and
// __expf is within (2 + 1.173 |x - lse|) ulp (the CPU's exp 2): (4 + 2.2 |x - lse|) u relative of p
// each side, twice that between them; the target entry rounds (p - 1) s or p s - s, u s; the add
// into start 2 u (|start| + |gradient|). Ignored rows keep start exactly. Then the GPU rounds once
// to the dtype: + R (|ref| + d) + the subnormal half-spacing.
std::vector<double> gradient_bounds(DType dtype, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                    const Tensor& start, const Tensor& ref, float scale) {
  const double u = std::ldexp(1.0, -24), R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  const std::vector<float> x = logits.to_vector(), l = lse.to_vector(), s0 = start.to_vector(), r = ref.to_vector();
  const std::vector<int32_t> t = targets.to_int_vector();
  const int64_t N = static_cast<int64_t>(t.size()), V = static_cast<int64_t>(x.size()) / N;
  std::vector<double> bounds(x.size());
  for (int64_t n = 0; n < N; n++)
    for (int64_t v = 0; v < V; v++) {
      const size_t i = static_cast<size_t>(n * V + v);
      double d = 0;
      if (t[static_cast<size_t>(n)] >= 0) {
        const double z = std::fabs(static_cast<double>(x[i]) - l[static_cast<size_t>(n)]);
        const double p = std::exp(static_cast<double>(x[i]) - l[static_cast<size_t>(n)]);
        d = scale * 2 * (4 + 2.2 * z) * u * p + (v == t[static_cast<size_t>(n)] ? u * scale : 0.0) +
            2 * u * (std::fabs(s0[i]) + std::fabs(r[i] - s0[i]));
      }
      bounds[i] = d + R * (std::fabs(r[i]) + d) + test::subnormal_half_spacing(dtype);
    }
  return bounds;
}

struct Sizes {
  int64_t N, V;
};
const std::vector<Sizes> kSizes = {{1, 37}, {67, 37}, {257, 1000}, {13, 50304}, {5, 1001}};

}  // namespace

TEST(CudaCrossEntropy, ForwardMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(701);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (Sizes s : kSizes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " N=" + std::to_string(s.N) + " V=" + std::to_string(s.V));
      Tensor logits = test::rounded_randn({s.N, s.V}, gen, dtype, 3.0f);
      Tensor targets = s.N == 1 ? Tensor::from_ints({5}, {1}) : targets_with_ignored(s.N, s.V, gen);
      Tensor ref_loss = Tensor::empty({}), ref_lse = Tensor::empty({s.N});
      ops::crossentropy_forward(ref_loss, ref_lse, logits, targets, -1);
      Tensor loss = test::poisoned({}, DType::F32), lse = test::poisoned({s.N}, DType::F32);
      ops::crossentropy_forward(loss, lse, test::to_device(logits, dtype), targets.to(test::gpu()), -1);
      EXPECT_LT(test::rel_error(loss, ref_loss), kF32Tolerance);
      EXPECT_LT(test::rel_error(lse, ref_lse), kF32Tolerance);
      EXPECT_TRUE(test::elementwise_close(loss, ref_loss, loss_tolerance(s.N, s.V, ref_lse)));
      EXPECT_TRUE(test::elementwise_close(lse, ref_lse, lse_tolerance(s.V)));
    }
  }
}

// dlogits += ... into buffers pre-filled with values of the gradient's own size, on both sides.
TEST(CudaCrossEntropy, BackwardAccumulatesAndMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(702);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (Sizes s : kSizes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " N=" + std::to_string(s.N) + " V=" + std::to_string(s.V));
      Tensor logits = test::rounded_randn({s.N, s.V}, gen, dtype, 3.0f);
      Tensor targets = s.N == 1 ? Tensor::from_ints({5}, {1}) : targets_with_ignored(s.N, s.V, gen);
      Tensor loss = Tensor::empty({}), lse = Tensor::empty({s.N});
      ops::crossentropy_forward(loss, lse, logits, targets, -1);
      Tensor dloss = Tensor::scalar(kScale * static_cast<float>(count_kept(targets, -1)));
      Tensor dlogits = test::rounded_randn({s.N, s.V}, gen, dtype, kScale / static_cast<float>(s.V));
      Tensor dlogits_gpu = test::to_device(dlogits, dtype);
      const Tensor start = dlogits.clone();
      ops::crossentropy_backward(dlogits, dloss, logits, targets, lse, -1);
      Tensor targets_gpu = targets.to(test::gpu());
      ops::crossentropy_backward(dlogits_gpu, dloss.to(test::gpu()), test::to_device(logits, dtype), targets_gpu,
                                 lse.to(test::gpu()), -1);
      EXPECT_LT(test::rel_error(dlogits_gpu, dlogits), rounded_tolerance(dtype));
      EXPECT_LT(test::rel_error(without_targets(dlogits_gpu, targets), without_targets(dlogits, targets)),
                rounded_tolerance(dtype));
      EXPECT_TRUE(test::elementwise_close(dlogits_gpu, dlogits,
                                          gradient_bounds(dtype, logits, targets, lse, start, dlogits, kScale)));
    }
  }
}

// The gradient written over the logits: equal to the CPU's gradient accumulated into zeros, with
// the ignored rows (which held logits) zeroed.
TEST(CudaCrossEntropy, InPlaceBackwardMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(703);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (Sizes s : kSizes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " N=" + std::to_string(s.N) + " V=" + std::to_string(s.V));
      Tensor logits = test::rounded_randn({s.N, s.V}, gen, dtype, 3.0f);
      Tensor targets = s.N == 1 ? Tensor::from_ints({5}, {1}) : targets_with_ignored(s.N, s.V, gen);
      Tensor loss = Tensor::empty({}), lse = Tensor::empty({s.N});
      ops::crossentropy_forward(loss, lse, logits, targets, -1);
      Tensor dloss = Tensor::scalar(kScale * static_cast<float>(count_kept(targets, -1)));
      Tensor ref = Tensor::zeros({s.N, s.V});
      ops::crossentropy_backward(ref, dloss, logits, targets, lse, -1);
      Tensor buffer = test::to_device(logits, dtype);
      ops::crossentropy_backward_inplace(buffer, dloss.to(test::gpu()), targets.to(test::gpu()), lse.to(test::gpu()), -1);
      EXPECT_LT(test::rel_error(buffer, ref), rounded_tolerance(dtype));
      EXPECT_LT(test::rel_error(without_targets(buffer, targets), without_targets(ref, targets)), rounded_tolerance(dtype));
      EXPECT_TRUE(test::elementwise_close(
          buffer, ref, gradient_bounds(dtype, logits, targets, lse, Tensor::zeros({s.N, s.V}), ref, kScale)));
      // Ignored rows are exactly 0.
      std::vector<float> g = buffer.to_vector();
      std::vector<int32_t> t = targets.to_int_vector();
      for (int64_t n = 0; n < s.N; n++) {
        if (t[n] != -1) continue;
        for (int64_t v = 0; v < s.V; v++) ASSERT_EQ(g[n * s.V + v], 0.0f) << "row " << n;
      }
    }
  }
}

TEST(CudaCrossEntropy, AllIgnoredGivesZeroLossAndZeroGradient) {
  TG_REQUIRE_GPU();
  Generator gen(704);
  for (DType dtype : test::cuda_float_dtypes()) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor logits = test::to_device(test::rounded_randn({6, 40}, gen, dtype), dtype);
    Tensor targets = Tensor::from_ints(std::vector<int32_t>(6, -100), {6}).to(test::gpu());
    Tensor loss = test::poisoned({}, DType::F32), lse = test::poisoned({6}, DType::F32);
    ops::crossentropy_forward(loss, lse, logits, targets, -100);
    EXPECT_EQ(loss.item(), 0.0f);
    Tensor dloss = Tensor::scalar(1.0f, DType::F32, test::gpu());
    Tensor dlogits = Tensor::full({6, 40}, 0.25f, dtype, test::gpu());
    ops::crossentropy_backward(dlogits, dloss, logits, targets, lse, -100);
    for (float v : dlogits.to_vector()) ASSERT_EQ(v, 0.25f);  // untouched
    ops::crossentropy_backward_inplace(logits, dloss, targets, lse, -100);
    for (float v : logits.to_vector()) ASSERT_EQ(v, 0.0f);
  }
}

TEST(CudaCrossEntropy, NanLogitPropagatesUnlessIgnored) {
  TG_REQUIRE_GPU();
  std::vector<float> values(3 * 50, 0.5f);
  values[1 * 50 + 7] = std::numeric_limits<float>::quiet_NaN();
  Tensor logits = Tensor::from_vector(values, {3, 50}).to(DType::BF16).to(test::gpu());
  // A finite sentinel rather than NaN poison: the NaN expected below must come from the kernel.
  Tensor loss = Tensor::full({}, 7.0f, DType::F32, test::gpu()), lse = Tensor::full({3}, 7.0f, DType::F32, test::gpu());
  ops::crossentropy_forward(loss, lse, logits, Tensor::from_ints({1, 2, 3}, {3}).to(test::gpu()), -1);
  EXPECT_TRUE(std::isnan(loss.item()));
  ops::crossentropy_forward(loss, lse, logits, Tensor::from_ints({1, -1, 3}, {3}).to(test::gpu()), -1);
  EXPECT_NEAR(loss.item(), std::log(50.0f), 1e-5f);  // uniform rows: log V
}

// Rows off a 16-byte boundary (a view one element into its storage) take the element path.
TEST(CudaCrossEntropy, MisalignedRowsTakeTheElementPath) {
  TG_REQUIRE_GPU();
  Generator gen(705);
  const int64_t N = 7, V = 1000;
  for (DType dtype : test::cuda_float_dtypes()) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor logits = test::rounded_randn({N, V}, gen, dtype, 2.0f);
    Tensor targets = targets_with_ignored(N, V, gen);
    Tensor ref_loss = Tensor::empty({}), ref_lse = Tensor::empty({N});
    ops::crossentropy_forward(ref_loss, ref_lse, logits, targets, -1);
    Tensor storage = test::poisoned({N * V + 1}, dtype);
    Tensor shifted = storage.narrow(0, 1, N * V).view({N, V});
    shifted.copy_(test::to_device(logits, dtype));
    Tensor loss = test::poisoned({}, DType::F32), lse = test::poisoned({N}, DType::F32);
    ops::crossentropy_forward(loss, lse, shifted, targets.to(test::gpu()), -1);
    EXPECT_LT(test::rel_error(loss, ref_loss), kF32Tolerance);
    EXPECT_LT(test::rel_error(lse, ref_lse), kF32Tolerance);
    EXPECT_TRUE(test::elementwise_close(loss, ref_loss, loss_tolerance(N, V, ref_lse)));
    EXPECT_TRUE(test::elementwise_close(lse, ref_lse, lse_tolerance(V)));
  }
}

// Same inputs twice: the same loss, lse and gradient bits (fixed-order reductions, no atomics).
TEST(CudaCrossEntropy, Deterministic) {
  TG_REQUIRE_GPU();
  Generator gen(706);
  const int64_t N = 515, V = 50304;
  for (DType dtype : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor logits = test::to_device(test::rounded_randn({N, V}, gen, dtype, 3.0f), dtype);
    Tensor targets = targets_with_ignored(N, V, gen).to(test::gpu());
    Tensor dloss = Tensor::scalar(1.0f, DType::F32, test::gpu());
    auto run = [&] {
      Tensor loss = test::poisoned({}, DType::F32), lse = test::poisoned({N}, DType::F32);
      ops::crossentropy_forward(loss, lse, logits, targets, -1);
      Tensor dlogits = Tensor::zeros({N, V}, dtype, test::gpu());
      ops::crossentropy_backward(dlogits, dloss, logits, targets, lse, -1);
      std::vector<float> all = dlogits.to_vector(), lv = lse.to_vector();
      all.insert(all.end(), lv.begin(), lv.end());
      all.push_back(loss.item());
      return all;
    };
    std::vector<float> first = run();
    EXPECT_EQ(run(), first);
  }
}

// The differentiable function on the GPU: an f32 scalar loss, the logits' gradient in their dtype.
TEST(CudaCrossEntropy, AutogradKeepsTheDtype) {
  TG_REQUIRE_GPU();
  Generator gen(707);
  Tensor logits = test::to_device(test::rounded_randn({2, 3, 11}, gen, DType::BF16), DType::BF16).requires_grad_();
  Tensor targets = Tensor::from_ints({0, 1, -1, 3, 10, 5}, {2, 3}).to(test::gpu());
  Tensor loss = cross_entropy(logits, targets);
  EXPECT_EQ(loss.dtype(), DType::F32);
  EXPECT_EQ(loss.shape(), Shape{});
  backward(loss);
  EXPECT_EQ(logits.grad().dtype(), DType::BF16);
  // Each kept row's gradient sums to 0 (softmax sums to 1, minus the onehot), up to one bf16
  // rounding of each entry: sum |g| = 2 (1 - p_target) / count <= 2 / 5, times 2^-8 = 1.6e-3.
  std::vector<float> g = logits.grad().to_vector();
  for (int row = 0; row < 6; row++) {
    double sum = 0;
    for (int v = 0; v < 11; v++) sum += g[row * 11 + v];
    EXPECT_NEAR(sum, 0.0, 2e-3) << "row " << row;
  }
}

TEST(CudaCrossEntropy, OutOfRangeTargetOnTheGpuNamesIt) {
  TG_REQUIRE_GPU();
  Tensor logits = Tensor::zeros({2, 3, 7}, DType::BF16, test::gpu());
  EXPECT_ERROR_MENTIONS(cross_entropy(logits, Tensor::from_ints({0, 1, 2, 3, 4, 9}, {2, 3}).to(test::gpu())),
                        "cross_entropy", "targets[1, 2]", "9", "V = 7");
  Tensor lse = Tensor::zeros({2, 3}, DType::F32, test::gpu()), dloss = Tensor::scalar(1.0f, DType::F32, test::gpu());
  EXPECT_ERROR_MENTIONS(ops::crossentropy_backward_inplace(logits, dloss,
                                                           Tensor::from_ints({0, -5, 2, 3, 4, 1}, {2, 3}).to(test::gpu()),
                                                           lse, -1),
                        "cross_entropy", "targets[0, 1]", "-5", "ignore_index (-1)");
}

// ---- CPU-runnable ------------------------------------------------------------------------------

// Half precision runs on the CPU too (tests/test_half_ops.cpp); mixed dtypes are refused by name.
TEST(CudaCrossEntropy, MixedDtypesAreAClearError) {
  Generator gen(1);
  Tensor targets = Tensor::from_ints({0, 1}, {2});
  Tensor logits = Tensor::randn({2, 5}, &gen), loss = Tensor::empty({}), lse = Tensor::empty({2});
  ops::crossentropy_forward(loss, lse, logits, targets, -1);
  Tensor dlogits = Tensor::zeros({2, 5}, DType::F16);
  EXPECT_ERROR_MENTIONS(ops::crossentropy_backward(dlogits, Tensor::scalar(1.0f), logits, targets, lse, -1),
                        "cross_entropy", "dlogits", "f16", "f32");
}

// The in-place front on the CPU: the gradient over the logits, ignored rows 0, equal to the
// accumulating backward into zeros; and its target check.
TEST(CudaCrossEntropy, InPlaceBackwardOnTheCpu) {
  Generator gen(708);
  const int64_t N = 10, V = 23;
  Tensor logits = Tensor::randn({N, V}, &gen);
  Tensor targets = targets_with_ignored(N, V, gen);
  Tensor loss = Tensor::empty({}), lse = Tensor::empty({N});
  ops::crossentropy_forward(loss, lse, logits, targets, -1);
  Tensor dloss = Tensor::scalar(1.5f);
  Tensor ref = Tensor::zeros({N, V});
  ops::crossentropy_backward(ref, dloss, logits, targets, lse, -1);
  Tensor buffer = logits.clone();
  ops::crossentropy_backward_inplace(buffer, dloss, targets, lse, -1);
  EXPECT_EQ(buffer.to_vector(), ref.to_vector());
  std::vector<float> g = buffer.to_vector();
  for (int64_t v = 0; v < V; v++) EXPECT_EQ(g[1 * V + v], 0.0f);  // row 1 is ignored
  EXPECT_ERROR_MENTIONS(ops::crossentropy_backward_inplace(buffer, dloss, Tensor::from_ints(std::vector<int32_t>(N, 23), {N}),
                                                           lse, -1),
                        "cross_entropy", "targets[0]", "23", "V = 23");
}

// Label smoothing e = 0.1 on the GPU against the CPU. The loss adds e (m - mean(x)) per row: each
// side sums the V logits in f32 lanes and double within V u sum|x| of the exact sum, so the rows'
// means differ by at most 2 u sum|x|, which the bound adds as 2 e u max_n sum_v |x_nv| to the lse
// bound of the plain loss. The gradient, s (p - e / V - (1 - e) [v = t]): the plain bound's
// p term, plus 4 u of each of its three terms (the products and the two subtractions, each side).
TEST(CudaCrossEntropy, LabelSmoothingMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(709);
  const float e = 0.1f;
  const double u = std::ldexp(1.0, -24);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (Sizes sz : kSizes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " N=" + std::to_string(sz.N) + " V=" + std::to_string(sz.V));
      Tensor logits = test::rounded_randn({sz.N, sz.V}, gen, dtype, 3.0f);
      Tensor targets = sz.N == 1 ? Tensor::from_ints({5}, {1}) : targets_with_ignored(sz.N, sz.V, gen);
      Tensor ref_loss = Tensor::empty({}), ref_lse = Tensor::empty({sz.N});
      ops::crossentropy_forward(ref_loss, ref_lse, logits, targets, -1, e);
      Tensor loss = test::poisoned({}, DType::F32), lse = test::poisoned({sz.N}, DType::F32);
      Tensor targets_gpu = targets.to(test::gpu()), logits_gpu = test::to_device(logits, dtype);
      ops::crossentropy_forward(loss, lse, logits_gpu, targets_gpu, -1, e);
      const std::vector<float> x = logits.to_vector();
      double row_abs_max = 0;
      for (int64_t n = 0; n < sz.N; n++) {
        double row = 0;
        for (int64_t v = 0; v < sz.V; v++) row += std::fabs(x[static_cast<size_t>(n * sz.V + v)]);
        row_abs_max = std::max(row_abs_max, row);
      }
      test::Tolerance tol = loss_tolerance(sz.N, sz.V, ref_lse);
      tol.atol += 2 * e * u * row_abs_max;
      EXPECT_TRUE(test::elementwise_close(loss, ref_loss, tol));
      EXPECT_TRUE(test::elementwise_close(lse, ref_lse, lse_tolerance(sz.V)));

      Tensor dloss = Tensor::scalar(kScale * static_cast<float>(count_kept(targets, -1)));
      Tensor start = test::rounded_randn({sz.N, sz.V}, gen, dtype, kScale / static_cast<float>(sz.V));
      Tensor dlogits = start.clone(), dlogits_gpu = test::to_device(start, dtype);
      ops::crossentropy_backward(dlogits, dloss, logits, targets, ref_lse, -1, e);
      ops::crossentropy_backward(dlogits_gpu, dloss.to(test::gpu()), logits_gpu, targets_gpu, ref_lse.to(test::gpu()),
                                 -1, e);
      std::vector<double> bounds = gradient_bounds(dtype, logits, targets, ref_lse, start, dlogits, kScale);
      const std::vector<int32_t> t = targets.to_int_vector();
      const std::vector<float> l = ref_lse.to_vector();
      const double R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
      for (int64_t n = 0; n < sz.N; n++) {
        if (t[static_cast<size_t>(n)] < 0) continue;
        for (int64_t v = 0; v < sz.V; v++) {
          const size_t i = static_cast<size_t>(n * sz.V + v);
          const double p = std::exp(static_cast<double>(x[i]) - l[static_cast<size_t>(n)]);
          const double terms = kScale * (p + e / sz.V + (v == t[static_cast<size_t>(n)] ? 1.0 - e : 0.0));
          bounds[i] += 4 * u * terms * (1 + R);
        }
      }
      EXPECT_TRUE(test::elementwise_close(dlogits_gpu, dlogits, bounds));
    }
  }
}
