// GEMM family: the raw kernel (tg::cpu::gemm) against a naive double-precision reference on awkward
// shapes, the Tensor front (ops::matmul: strides, transposed views, errors), and the differentiable
// matmul / linear (values and gradcheck).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/matmul.h"
#include "autograd/functions/view.h"
#include "autograd/gradcheck.h"
#include "ops/cpu/gemm.h"
#include "ops/gemm.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kUnitRoundoff = 5.96e-8;  // 2^-24, f32

std::vector<float> random_vector(size_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<float> v(n);
  for (float& x : v) x = gen.normal();
  return v;
}

// op(X)(i, j) for X stored row-major with leading dimension ld.
double element(const std::vector<float>& x, bool trans, int64_t ld, int64_t i, int64_t j) {
  return trans ? x[j * ld + i] : x[i * ld + j];
}

struct Case {
  bool trans_a, trans_b;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad = 0;  // extra elements per row of A, B and C (lda/ldb/ldc above the minimum)
};

std::string describe(const Case& c) {
  return "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " trans_a=" +
         std::to_string(c.trans_a) + " trans_b=" + std::to_string(c.trans_b) + " alpha=" + std::to_string(c.alpha) +
         " beta=" + std::to_string(c.beta) + " pad=" + std::to_string(c.pad);
}

// Runs cpu::gemm on random operands and compares every element of C (and the padding around it)
// with a double-precision reference.
//
// Tolerance: f32 accumulation over K terms has a worst-case rounding error of about
// K * u * sum_k |a_ik b_kj| (u = 2^-24), plus a few roundings in alpha * acc + beta * c. We allow
// (K + 4) * u * (|alpha| sum_k |a_ik b_kj| + |beta c_ij|). That is still far below the size of one
// product term (~|a b| ~ 1), so a dropped, doubled or misplaced k term, a wrong edge element or a
// wrong alpha/beta fails the test.
void check_gemm(const Case& c) {
  const int64_t a_rows = c.trans_a ? c.K : c.M, a_cols = c.trans_a ? c.M : c.K;
  const int64_t b_rows = c.trans_b ? c.N : c.K, b_cols = c.trans_b ? c.K : c.N;
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.N + c.pad;
  std::vector<float> A = random_vector(static_cast<size_t>(std::max<int64_t>(a_rows * lda, 1)), 11);
  std::vector<float> B = random_vector(static_cast<size_t>(std::max<int64_t>(b_rows * ldb, 1)), 12);
  std::vector<float> C = random_vector(static_cast<size_t>(std::max<int64_t>(c.M * ldc, 1)), 13);
  constexpr float kPadSentinel = 12345.0f;
  for (int64_t i = 0; i < c.M; i++) {
    for (int64_t j = c.N; j < ldc; j++) C[i * ldc + j] = kPadSentinel;
    // beta == 0 must ignore C entirely: poison it so that reading it would show.
    if (c.beta == 0.0f)
      for (int64_t j = 0; j < c.N; j++) C[i * ldc + j] = kNaN;
  }
  const std::vector<float> C0 = C;
  cpu::gemm(c.trans_a, c.trans_b, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);

  int failures = 0;
  for (int64_t i = 0; i < c.M && failures < 5; i++) {
    for (int64_t j = 0; j < c.N; j++) {
      double sum = 0, magnitude = 0;
      for (int64_t k = 0; k < c.K; k++) {
        double term = element(A, c.trans_a, lda, i, k) * element(B, c.trans_b, ldb, k, j);
        sum += term;
        magnitude += std::fabs(term);
      }
      const double old = c.beta == 0.0f ? 0.0 : C0[i * ldc + j];
      const double expected = c.alpha * sum + c.beta * old;
      const double tolerance =
          (c.K + 4) * kUnitRoundoff * (std::fabs(c.alpha) * magnitude + std::fabs(c.beta * old)) + 1e-30;
      const double got = C[i * ldc + j];
      if (!(std::fabs(got - expected) <= tolerance)) {
        ADD_FAILURE() << describe(c) << ": C(" << i << ", " << j << ") = " << got << ", expected " << expected
                      << " (tolerance " << tolerance << ")";
        if (++failures >= 5) break;
      }
    }
    for (int64_t j = c.N; j < ldc; j++)
      if (C[i * ldc + j] != kPadSentinel) {
        ADD_FAILURE() << describe(c) << ": wrote into the padding of row " << i << " at column " << j;
        ++failures;
        break;
      }
  }
}

void check_all_transposes(int64_t M, int64_t N, int64_t K, float alpha = 1.0f, float beta = 0.0f, int64_t pad = 0) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) check_gemm({ta, tb, M, N, K, alpha, beta, pad});
}

std::vector<float> values(const Tensor& t) { return t.to_vector(); }

// Naive reference for a (M,K) @ b (K,N) given as value vectors, in double.
std::vector<double> naive_matmul(const std::vector<float>& a, const std::vector<float>& b, int64_t M, int64_t N,
                                 int64_t K) {
  std::vector<double> out(static_cast<size_t>(M * N), 0.0);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++)
      for (int64_t k = 0; k < K; k++) out[i * N + j] += static_cast<double>(a[i * K + k]) * b[k * N + j];
  return out;
}

// Values from O(1) random inputs with K <= 64 terms: f32 error is a few 1e-6 at most.
void expect_close(const std::vector<float>& got, const std::vector<double>& expected, double tolerance = 1e-4) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); i++) ASSERT_NEAR(got[i], expected[i], tolerance) << "element " << i;
}


Tensor randn_grad(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  return Tensor::randn(shape, &gen).requires_grad_(true);
}

}  // namespace

// ---- the kernel --------------------------------------------------------------------------------

// Every test of GemmKernel runs at each instruction-set level of the CPU kernels.
class GemmKernel : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(GemmKernel);

TEST_P(GemmKernel, SquareAwkwardSizes) {
  for (int64_t s : {1, 2, 3, 7, 17, 31, 33, 63, 65, 127, 129}) check_all_transposes(s, s, s);
}

TEST_P(GemmKernel, LargerThanOneCacheBlock) {
  // M past the row block (112 rows) and K past the depth block (768): several packed blocks, and
  // a K remainder block that must add onto the first one's partial sums.
  check_all_transposes(257, 257, 257);
  check_all_transposes(300, 129, 300);
  check_all_transposes(1000, 33, 65);
  check_all_transposes(65, 31, 1000);
  check_all_transposes(129, 65, 1537);
}

TEST_P(GemmKernel, TallSkinnyAndWideShapes) {
  check_all_transposes(1, 300, 257);
  check_all_transposes(300, 1, 129);
  check_all_transposes(257, 300, 1);
  check_all_transposes(7, 1000, 33);
  check_all_transposes(1000, 7, 65);
  check_all_transposes(1023, 17, 63);
  check_all_transposes(2, 3, 1000);
  // N past the column block (2048 columns) exercises the outermost loop.
  check_all_transposes(15, 4100, 5);
}

TEST_P(GemmKernel, AlphaAndBeta) {
  for (float beta : {0.0f, 1.0f, 0.25f}) {
    check_all_transposes(33, 65, 17, 1.0f, beta);
    check_all_transposes(129, 63, 800, -0.5f, beta);  // two K blocks: only the first may apply beta
  }
}

TEST_P(GemmKernel, LeadingDimensionsAboveMinimum) {
  check_all_transposes(31, 33, 17, 1.0f, 0.0f, 5);
  check_all_transposes(129, 65, 257, 0.5f, 1.0f, 3);
}

TEST_P(GemmKernel, DegenerateSizes) {
  // K == 0: C = beta * C; beta == 0 gives zeros even over NaN.
  std::vector<float> C(6, kNaN);
  cpu::gemm(false, false, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 3, 0.0f, C.data(), 3);
  for (float v : C) EXPECT_EQ(v, 0.0f);
  std::vector<float> D(6, 2.0f);
  cpu::gemm(false, true, 2, 3, 0, 1.0f, nullptr, 1, nullptr, 1, 0.5f, D.data(), 3);
  for (float v : D) EXPECT_EQ(v, 1.0f);
  // alpha == 0 never reads A or B (null here) and still scales C.
  cpu::gemm(false, false, 2, 3, 4, 0.0f, nullptr, 4, nullptr, 3, 2.0f, D.data(), 3);
  for (float v : D) EXPECT_EQ(v, 2.0f);
  // M == 0 or N == 0: nothing to write, nothing read.
  cpu::gemm(false, false, 0, 3, 4, 1.0f, nullptr, 4, nullptr, 3, 0.0f, nullptr, 3);
  cpu::gemm(false, false, 2, 0, 4, 1.0f, nullptr, 4, nullptr, 0, 0.0f, nullptr, 1);
}

TEST_P(GemmKernel, Batched) {
  // batch 3 runs item by item with every thread; batch 4 splits whole items across threads.
  for (int64_t batch : {3, 4}) {
    for (bool shared_b : {false, true}) {
      const int64_t M = 17, N = 33, K = 65, pad = 7;  // items spaced apart by `pad` elements
      const int64_t sa = M * K + pad, sb = shared_b ? 0 : K * N + pad, sc = M * N + pad;
      std::vector<float> A = random_vector(static_cast<size_t>(batch * sa), 1);
      std::vector<float> B = random_vector(static_cast<size_t>(shared_b ? K * N : batch * sb), 2);
      std::vector<float> C(static_cast<size_t>(batch * sc), kNaN);
      cpu::gemm_batched(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N, batch, sa, sb, sc);
      for (int64_t t = 0; t < batch; t++)
        for (int64_t i = 0; i < M; i++)
          for (int64_t j = 0; j < N; j++) {
            double sum = 0, magnitude = 0;
            for (int64_t k = 0; k < K; k++) {
              double term = static_cast<double>(A[t * sa + i * K + k]) * B[t * sb + j * K + k];  // B stored (N, K)
              sum += term;
              magnitude += std::fabs(term);
            }
            ASSERT_NEAR(C[t * sc + i * N + j], sum, (K + 4) * kUnitRoundoff * magnitude)
                << "batch " << batch << " item " << t << " (" << i << ", " << j << ") shared_b " << shared_b;
          }
      for (int64_t t = 0; t < batch; t++)
        for (int64_t p = M * N; p < sc; p++) ASSERT_TRUE(std::isnan(C[t * sc + p])) << "wrote between batch items";
    }
  }
}

TEST_P(GemmKernel, LinearEpilogueHelpers) {
  const int64_t M = 1000, N = 65;  // large enough for the threaded path
  std::vector<float> bias = random_vector(N, 3), out(static_cast<size_t>(M * N), kNaN);
  cpu::broadcast_rows(out.data(), bias.data(), M, N);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) ASSERT_EQ(out[i * N + j], bias[j]);
  std::vector<float> dout = random_vector(static_cast<size_t>(M * N), 4), dbias(N, 1.0f);
  cpu::column_sums_accumulate(dbias.data(), dout.data(), M, N);
  for (int64_t j = 0; j < N; j++) {
    double sum = 1.0, magnitude = 1.0;
    for (int64_t i = 0; i < M; i++) { sum += dout[i * N + j]; magnitude += std::fabs(dout[i * N + j]); }
    EXPECT_NEAR(dbias[j], sum, (M + 2) * kUnitRoundoff * magnitude) << "column " << j;  // f32 sum of M terms
  }
}

// ---- the Tensor front ------------------------------------------------------------------------

TEST(MatmulOp, TransposedViewsAreReadInPlace) {
  Generator gen(5);
  const int64_t M = 7, N = 9, K = 13;
  Tensor a = Tensor::randn({M, K}, &gen), b = Tensor::randn({K, N}, &gen);
  std::vector<double> expected = naive_matmul(values(a), values(b), M, N, K);
  Tensor at = a.transpose(0, 1).contiguous(), bt = b.transpose(0, 1).contiguous();  // stored (K,M), (N,K)
  for (bool view_a : {false, true})
    for (bool view_b : {false, true}) {
      // Each operand either as a transposed view (flag false) or as its stored transpose (flag true).
      Tensor out = Tensor::full({M, N}, kNaN);
      ops::matmul(out, view_a ? at.transpose(0, 1) : at, view_b ? bt.transpose(0, 1) : bt, !view_a, !view_b);
      expect_close(values(out), expected);
    }
  // beta = 1 accumulates.
  Tensor out = Tensor::ones({M, N});
  ops::matmul(out, a, b, false, false, 1.0f);
  for (double& e : expected) e += 1.0;
  expect_close(values(out), expected);
}

TEST(MatmulOp, BatchedAndSharedOperand) {
  Generator gen(6);
  const int64_t B = 3, M = 5, N = 4, K = 6;
  Tensor a = Tensor::randn({B, M, K}, &gen), b = Tensor::randn({B, K, N}, &gen), w = Tensor::randn({K, N}, &gen);
  Tensor out = Tensor::empty({B, M, N}), shared = Tensor::empty({B, M, N});
  ops::matmul(out, a, b);
  ops::matmul(shared, a, w);
  for (int64_t t = 0; t < B; t++) {
    expect_close(values(out.select(0, t)), naive_matmul(values(a.select(0, t)), values(b.select(0, t)), M, N, K));
    expect_close(values(shared.select(0, t)), naive_matmul(values(a.select(0, t)), values(w), M, N, K));
  }
}

TEST(MatmulOp, BadInputsNameTheOpAndShapes) {
  Tensor a = Tensor::zeros({3, 5}), b = Tensor::zeros({4, 2}), out = Tensor::zeros({3, 2});
  expect_error([&] { ops::matmul(out, a, b); }, {"matmul", "(3, 5)", "(4, 2)", "inner"});
  Tensor b2 = Tensor::zeros({5, 2}), wrong_out = Tensor::zeros({2, 3});
  expect_error([&] { ops::matmul(wrong_out, a, b2); }, {"matmul", "out", "(3, 2)", "(2, 3)"});
  Tensor strided = Tensor::zeros({3, 10}).slice(1, 0, 10, 2);  // column stride 2: not a matrix layout
  expect_error([&] { ops::matmul(out, strided, b2); }, {"matmul", "strides", "contiguous"});
  Tensor ints = Tensor::zeros({3, 5}, DType::I32);
  expect_error([&] { ops::matmul(out, ints, b2); }, {"matmul", "dtype", "i32"});
  Tensor a3 = Tensor::zeros({2, 3, 5}), b3 = Tensor::zeros({3, 5, 2}), out3 = Tensor::zeros({2, 3, 2});
  expect_error([&] { ops::matmul(out3, a3, b3); }, {"matmul", "batch", "(2, 3, 5)", "(3, 5, 2)"});
}

// ---- differentiable matmul and linear --------------------------------------------------------

TEST(Matmul, ForwardShapesAgainstReference) {
  Generator gen(7);
  Tensor a = Tensor::randn({2, 3, 4, 5}, &gen), w = Tensor::randn({5, 6}, &gen);
  Tensor y = matmul(a, w);  // leading dims fold into M
  ASSERT_EQ(y.shape(), (Shape{2, 3, 4, 6}));
  expect_close(values(y), naive_matmul(values(a), values(w), 24, 6, 5));
  Tensor wt = Tensor::randn({6, 5}, &gen);  // used as its transposed view (5, 6)
  expect_close(values(matmul(a, transpose(wt, 0, 1))), naive_matmul(values(a), values(wt.transpose(0, 1)), 24, 6, 5));
}

TEST(Matmul, GradCheck2D) {
  auto fn = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  EXPECT_EQ(gradcheck(fn, {randn_grad({3, 5}, 1), randn_grad({5, 4}, 2)}), "");
  EXPECT_EQ(gradcheck(fn, {randn_grad({1, 7}, 3), randn_grad({7, 1}, 4)}), "");
}

TEST(Matmul, GradCheckBatched) {
  auto fn = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  EXPECT_EQ(gradcheck(fn, {randn_grad({2, 3, 5}, 5), randn_grad({2, 5, 4}, 6)}), "");
}

TEST(Matmul, GradCheckBroadcastLeadingDims) {
  auto fn = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  EXPECT_EQ(gradcheck(fn, {randn_grad({2, 3, 2, 5}, 7), randn_grad({5, 3}, 8)}), "");
}

TEST(Matmul, GradCheckTransposedViews) {
  // A transposed view of either operand is read in place (trans flag) in forward and backward.
  auto t_a = [](const std::vector<Tensor>& x) { return matmul(transpose(x[0], 0, 1), x[1]); };
  EXPECT_EQ(gradcheck(t_a, {randn_grad({5, 3}, 9), randn_grad({5, 4}, 10)}), "");
  auto t_b = [](const std::vector<Tensor>& x) { return matmul(x[0], transpose(x[1], 0, 1)); };
  EXPECT_EQ(gradcheck(t_b, {randn_grad({3, 5}, 11), randn_grad({4, 5}, 12)}), "");
  // A batched transposed view sharing a 2-D b (the gradient of b sums over the batch).
  auto t_batched = [](const std::vector<Tensor>& x) { return matmul(transpose(x[0], 1, 2), x[1]); };
  EXPECT_EQ(gradcheck(t_batched, {randn_grad({2, 5, 3}, 13), randn_grad({5, 4}, 14)}), "");
  // A permuted batch (batch stride 5, row stride 10) is still a plain matrix layout per item.
  auto permuted = [](const std::vector<Tensor>& x) { return matmul(permute(x[0], {1, 0, 2}), x[1]); };
  EXPECT_EQ(gradcheck(permuted, {randn_grad({3, 2, 5}, 15), randn_grad({2, 5, 4}, 16)}), "");
  // Strides that are no plain transpose (every other column) fall back to a copy.
  auto strided = [](const std::vector<Tensor>& x) { return matmul(slice(x[0], 2, 0, 10, 2), x[1]); };
  EXPECT_EQ(gradcheck(strided, {randn_grad({2, 3, 10}, 17), randn_grad({2, 5, 4}, 18)}), "");
}

TEST(Matmul, BadShapesNameTheOpAndShapes) {
  expect_error([] { matmul(Tensor::zeros({3, 5}), Tensor::zeros({4, 2})); }, {"matmul", "(3, 5)", "(4, 2)"});
  expect_error([] { matmul(Tensor::zeros({5}), Tensor::zeros({5, 2})); }, {"matmul", "(5)"});
  expect_error([] { matmul(Tensor::zeros({2, 3, 5}), Tensor::zeros({3, 5, 2})); },
                        {"matmul", "batch", "(2, 3, 5)", "(3, 5, 2)"});
}

TEST(Linear, ForwardAgainstReference) {
  Generator gen(8);
  const int64_t M = 6, IN = 5, OUT = 3;
  Tensor x = Tensor::randn({2, 3, IN}, &gen), w = Tensor::randn({OUT, IN}, &gen), b = Tensor::randn({OUT}, &gen);
  std::vector<double> expected = naive_matmul(values(x), values(w.transpose(0, 1)), M, OUT, IN);
  Tensor y_plain = linear(x, w, Tensor());
  ASSERT_EQ(y_plain.shape(), (Shape{2, 3, OUT}));
  expect_close(values(y_plain), expected);
  std::vector<float> bias = values(b);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < OUT; j++) expected[i * OUT + j] += bias[j];
  expect_close(values(linear(x, w, b)), expected);
}

TEST(Linear, GradCheck) {
  auto with_bias = [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); };
  auto without_bias = [](const std::vector<Tensor>& x) { return linear(x[0], x[1], Tensor()); };
  EXPECT_EQ(gradcheck(with_bias, {randn_grad({4, 5}, 21), randn_grad({3, 5}, 22), randn_grad({3}, 23)}), "");
  EXPECT_EQ(gradcheck(without_bias, {randn_grad({4, 5}, 24), randn_grad({3, 5}, 25)}), "");
  EXPECT_EQ(gradcheck(with_bias, {randn_grad({2, 3, 5}, 26), randn_grad({7, 5}, 27), randn_grad({7}, 28)}), "");
  // The weight as a transposed view of a stored (IN, OUT) parameter.
  auto tied = [](const std::vector<Tensor>& x) { return linear(x[0], transpose(x[1], 0, 1), Tensor()); };
  EXPECT_EQ(gradcheck(tied, {randn_grad({3, 4}, 29), randn_grad({4, 6}, 30)}), "");
}

TEST(Linear, GradientsAccumulateIntoExistingGrads) {
  // Backward adds (beta = 1): two backward passes give twice one pass.
  Tensor x = randn_grad({4, 5}, 31), w = randn_grad({3, 5}, 32), b = randn_grad({3}, 33);
  Tensor seed = Tensor::ones({4, 3});
  backward(linear(x, w, b), seed);
  std::vector<float> once_x = values(x.grad()), once_w = values(w.grad()), once_b = values(b.grad());
  backward(linear(x, w, b), seed);
  std::vector<float> twice_x = values(x.grad()), twice_w = values(w.grad()), twice_b = values(b.grad());
  for (size_t i = 0; i < once_x.size(); i++) EXPECT_FLOAT_EQ(twice_x[i], 2 * once_x[i]);
  for (size_t i = 0; i < once_w.size(); i++) EXPECT_FLOAT_EQ(twice_w[i], 2 * once_w[i]);
  for (size_t i = 0; i < once_b.size(); i++) EXPECT_FLOAT_EQ(twice_b[i], 2 * once_b[i]);
  for (size_t i = 0; i < once_b.size(); i++) EXPECT_FLOAT_EQ(once_b[i], 4.0f);  // 4 rows of ones
}

TEST(Linear, BadShapesNameTheOpAndShapes) {
  expect_error([] { linear(Tensor::zeros({4, 5}), Tensor::zeros({3, 6}), Tensor()); },
                        {"linear", "(4, 5)", "(3, 6)"});
  expect_error([] { linear(Tensor::zeros({4, 5}), Tensor::zeros({3, 5}), Tensor::zeros({4})); },
                        {"linear", "bias", "(4)"});
  expect_error([] { linear(Tensor::zeros({4, 5}), Tensor::zeros({15}), Tensor()); }, {"linear", "(15)"});
}
