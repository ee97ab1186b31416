// ops::matmul, ops::linear (every epilogue), broadcast_rows, column_sums_accumulate and the
// autograd matmul/linear on bf16 and f16 tensors on the CPU, against double-precision references
// computed from the same 16-bit inputs: every transpose flag, transposed views, padded rows,
// batches with a shared operand, beta = 0 (out holding NaN) and beta = 1, awkward shapes. Each
// runs on bf16's AVX512_BF16 path (where the CPU has it), on its f32 path, and on f16, at every
// instruction-set level the conversions and epilogue kernels are compiled for.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/matmul.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/isa.h"
#include "ops/gemm.h"
#include "tensor/random.h"
#include "test_util.h"

using namespace tg;

namespace {

// Which 16-bit GEMM runs: the dtype, bf16's path, and the instruction-set level of the conversions.
struct HalfConfig {
  DType dtype;
  cpu::GemmBf16Path path;  // bf16 only; f16 always widens to f32
  cpu::CpuIsa isa;
};

std::string config_name(const HalfConfig& c) {
  std::string name = c.dtype == DType::BF16 ? "bf16_" : "f16_";
  if (c.dtype == DType::BF16) name += std::string(cpu::gemm_bf16_path_name(c.path)) + "_";
  return name + cpu::cpu_isa_name(c.isa);
}

class GemmHalf : public ::testing::TestWithParam<HalfConfig> {
 protected:
  void SetUp() override {
    const HalfConfig& c = GetParam();
    if (!cpu::cpu_isa_supported(c.isa)) GTEST_SKIP() << "this CPU lacks " << cpu::cpu_isa_name(c.isa);
    if (c.dtype == DType::BF16 && c.path == cpu::GemmBf16Path::Avx512Bf16 && !cpu::cpu_has_avx512_bf16())
      GTEST_SKIP() << "this CPU lacks AVX512_BF16";
    level_.emplace(c.isa);
    cpu::force_gemm_bf16_f32_path(c.path == cpu::GemmBf16Path::F32);
  }
  void TearDown() override {
    cpu::force_gemm_bf16_f32_path(false);
    level_.reset();
  }
  DType dtype() const { return GetParam().dtype; }

 private:
  std::optional<cpu::ScopedCpuIsa> level_;
};

const std::vector<HalfConfig> kConfigs = {
    {DType::BF16, cpu::GemmBf16Path::Avx512Bf16, cpu::CpuIsa::avx512},
    {DType::BF16, cpu::GemmBf16Path::F32, cpu::CpuIsa::scalar},
    {DType::BF16, cpu::GemmBf16Path::F32, cpu::CpuIsa::avx2},
    {DType::BF16, cpu::GemmBf16Path::F32, cpu::CpuIsa::avx512},
    {DType::F16, cpu::GemmBf16Path::F32, cpu::CpuIsa::scalar},
    {DType::F16, cpu::GemmBf16Path::F32, cpu::CpuIsa::avx2},
    {DType::F16, cpu::GemmBf16Path::F32, cpu::CpuIsa::avx512},
};

INSTANTIATE_TEST_SUITE_P(, GemmHalf, ::testing::ValuesIn(kConfigs),
                         [](const ::testing::TestParamInfo<HalfConfig>& info) { return config_name(info.param); });

constexpr double kU32 = 5.9604644775390625e-08;  // 2^-24

// The unit roundoff of the 16-bit type (8 and 11 significand bits), and the absolute error of
// rounding into f16's subnormal range (half its spacing 2^-24); bf16 has f32's range.
double unit_roundoff(DType dtype) { return dtype == DType::BF16 ? 1.0 / 256 : 1.0 / 2048; }
double subnormal_atol(DType dtype) { return dtype == DType::F16 ? std::ldexp(1.0, -25) : 0.0; }

Tensor random_half(const Shape& shape, DType dtype, Generator& gen) {
  return Tensor::randn(shape, &gen).to(dtype);
}

std::vector<double> values(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  return std::vector<double>(v.begin(), v.end());
}

// The bound on one output element, from the exact value `exact` and sum_k |a_ik b_kj| (plus |beta
// c|, plus |bias|) `magnitude`: the products of 16-bit values are exact in f32 (8- or 11-bit
// significands), and each element takes at most n = K + K/256 + 4 f32 roundings on its path (K
// additions, the partial sums of blocked K, alpha, beta, the bias), so the f32 value is within
// gamma_n * magnitude, gamma_n = n u32 / (1 - n u32). Rounding it to 16 bits once adds
// u16 (|exact| + that error), or f16's subnormal half spacing. A dropped, doubled or misplaced
// product (|a b| ~ 1 with these inputs) is far outside.
double product_bound(DType dtype, int64_t K, double exact, double magnitude) {
  const double n = static_cast<double>(K + K / 256 + 4);
  const double f32_error = n * kU32 / (1 - n * kU32) * magnitude;
  return f32_error + unit_roundoff(dtype) * (std::fabs(exact) + f32_error) + subnormal_atol(dtype);
}

// op(x) of batch item t as a (rows, cols) row-major array of doubles; a 2-D x is every item.
struct Logical {
  std::vector<double> v;
  int64_t rows, cols;
  double at(int64_t i, int64_t j) const { return v[static_cast<size_t>(i * cols + j)]; }
};

Logical logical(const Tensor& x, bool trans, int64_t t) {
  const std::vector<double> all = values(x);
  const int64_t r = x.size(-2), c = x.size(-1), offset = x.dim() == 3 ? t * r * c : 0;
  Logical out{std::vector<double>(static_cast<size_t>(r * c)), trans ? c : r, trans ? r : c};
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++)
      out.v[static_cast<size_t>(trans ? j * r + i : i * c + j)] = all[static_cast<size_t>(offset + i * c + j)];
  return out;
}

// Checks out (items, M, N) = op(a) @ op(b) + beta * out0 element by element.
void expect_product(const Tensor& out, const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, float beta,
                    const std::vector<double>& out0, DType dtype, const std::string& what) {
  const int64_t items = out.dim() == 3 ? out.size(0) : 1, M = out.size(-2), N = out.size(-1);
  const std::vector<double> got = values(out);
  int failures = 0;
  for (int64_t t = 0; t < items; t++) {
    const Logical A = logical(a, trans_a, t), B = logical(b, trans_b, t);
    const int64_t K = A.cols;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        const size_t at = static_cast<size_t>((t * M + i) * N + j);
        double exact = beta != 0.0f ? beta * out0[at] : 0.0, magnitude = std::fabs(exact);
        for (int64_t k = 0; k < K; k++) {
          exact += A.at(i, k) * B.at(k, j);
          magnitude += std::fabs(A.at(i, k) * B.at(k, j));
        }
        const double bound = product_bound(dtype, K, exact, magnitude);
        if (!(std::fabs(got[at] - exact) <= bound) && failures++ < 5)
          ADD_FAILURE() << what << ": item " << t << " (" << i << ", " << j << ") got " << got[at] << ", want "
                        << exact << " +- " << bound;
      }
  }
}

// A 16-bit tensor filled with NaN: what beta == 0 must never read.
Tensor nan_half(const Shape& shape, DType dtype) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return Tensor::from_vector(std::vector<float>(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN()),
                             shape, dtype);
}

// The stored operand of a matmul: (rows, cols) per item as the flag reads it, with `pad` extra
// columns cut off by a slice (row stride above the row length).
Tensor stored(int64_t items, int64_t rows, int64_t cols, int64_t pad, DType dtype, Generator& gen) {
  Shape shape = items ? Shape{items, rows, cols + pad} : Shape{rows, cols + pad};
  Tensor x = random_half(shape, dtype, gen);
  return pad ? x.slice(x.dim() - 1, 0, cols) : x;
}

// ---- ops::matmul ------------------------------------------------------------------------------

TEST_P(GemmHalf, MatmulEveryTransposeAwkwardShapesBetaZeroAndOne) {
  Generator gen(101);
  const int64_t shapes[][3] = {{1, 1, 1}, {13, 33, 7}, {29, 47, 65}, {15, 70, 300}, {3, 5, 1}};
  for (const auto& s : shapes)
    for (int flags = 0; flags < 4; flags++)
      for (float beta : {0.0f, 1.0f}) {
        const int64_t M = s[0], N = s[1], K = s[2];
        const bool ta = flags & 1, tb = flags & 2;
        const int64_t pad = M % 2 ? 3 : 0;
        Tensor a = stored(0, ta ? K : M, ta ? M : K, pad, dtype(), gen);
        Tensor b = stored(0, tb ? N : K, tb ? K : N, pad, dtype(), gen);
        Tensor out = beta != 0.0f ? random_half({M, N}, dtype(), gen) : nan_half({M, N}, dtype());
        const std::vector<double> out0 = values(out);
        ops::matmul(out, a, b, ta, tb, beta);
        expect_product(out, a, ta, b, tb, beta, out0, dtype(),
                       "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                           " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " beta=" + std::to_string(beta));
      }
}

TEST_P(GemmHalf, MatmulReadsTransposedViewsInPlace) {
  Generator gen(102);
  const int64_t M = 17, N = 35, K = 23;
  Tensor a_t = random_half({K, M}, dtype(), gen), b_t = random_half({N, K}, dtype(), gen);
  Tensor a = a_t.transpose(0, 1), b = b_t.transpose(0, 1);  // logical (M,K) and (K,N), strides (1, ld)
  Tensor out = nan_half({M, N}, dtype());
  ops::matmul(out, a, b);
  expect_product(out, a, false, b, false, 0.0f, {}, dtype(), "transposed views");
  // A transposed view with the flag set reads the stored matrix as it lies.
  Tensor out2 = nan_half({M, M}, dtype());
  ops::matmul(out2, a, a, false, true);
  expect_product(out2, a, false, a, true, 0.0f, {}, dtype(), "a @ a^T through a view");
}

TEST_P(GemmHalf, MatmulBatchedAndSharedOperands) {
  Generator gen(103);
  const int64_t B = 3, M = 9, N = 37, K = 20;
  for (int flags = 0; flags < 4; flags++) {
    const bool ta = flags & 1, tb = flags & 2;
    Tensor a = stored(B, ta ? K : M, ta ? M : K, 2, dtype(), gen);
    Tensor b = stored(B, tb ? N : K, tb ? K : N, 0, dtype(), gen);
    Tensor out = random_half({B, M, N}, dtype(), gen);
    const std::vector<double> out0 = values(out);
    ops::matmul(out, a, b, ta, tb, 1.0f);
    expect_product(out, a, ta, b, tb, 1.0f, out0, dtype(), "batched flags=" + std::to_string(flags));
    Tensor shared_b = stored(0, tb ? N : K, tb ? K : N, 0, dtype(), gen);
    Tensor out_b = nan_half({B, M, N}, dtype());
    ops::matmul(out_b, a, shared_b, ta, tb);
    expect_product(out_b, a, ta, shared_b, tb, 0.0f, {}, dtype(), "shared b flags=" + std::to_string(flags));
    Tensor shared_a = stored(0, ta ? K : M, ta ? M : K, 0, dtype(), gen);
    Tensor out_a = nan_half({B, M, N}, dtype());
    ops::matmul(out_a, shared_a, b, ta, tb);
    expect_product(out_a, shared_a, ta, b, tb, 0.0f, {}, dtype(), "shared a flags=" + std::to_string(flags));
  }
}

// K == 0: out = beta * out (zero for beta == 0, even over NaN).
TEST_P(GemmHalf, MatmulEmptyInnerDimension) {
  Generator gen(104);
  Tensor a = random_half({4, 0}, dtype(), gen), b = random_half({0, 6}, dtype(), gen);
  Tensor out = nan_half({4, 6}, dtype());
  ops::matmul(out, a, b);
  for (float v : out.to_vector()) EXPECT_EQ(v, 0.0f);
  Tensor kept = random_half({4, 6}, dtype(), gen);
  const std::vector<float> before = kept.to_vector();
  ops::matmul(kept, a, b, false, false, 1.0f);
  EXPECT_EQ(kept.to_vector(), before);
}

// ---- ops::linear and its epilogues -----------------------------------------------------------

// gelu in double, the tanh approximation of ops/activation.h in its sigmoid form x / (1 + e^(-2u)),
// which keeps full relative precision in the negative tail where 1 + tanh(u) cancels.
double gelu_ref(double x) { return x / (1.0 + std::exp(-2.0 * 0.7978845608028654 * (x + 0.044715 * x * x * x))); }

// The f32 GELU kernel's error (tests/test_activation.cpp): 1e-6 relative, plus 3e-7 |2u| relative
// for u < 0 from the float rounding of u, plus 1e-30 absolute in the far negative tail.
double gelu_bound(double x) {
  const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return (1e-6 + (u < 0 ? 3e-7 * std::fabs(2 * u) : 0.0)) * std::fabs(gelu_ref(x)) + 1e-30;
}

struct LinearCase {
  bool bias, gelu, pre_gelu, residual, residual_is_out, x_view, w_view;
};

std::string describe(const LinearCase& c) {
  return std::string("bias=") + std::to_string(c.bias) + " gelu=" + std::to_string(c.gelu) + " pre_gelu=" +
         std::to_string(c.pre_gelu) + " residual=" + std::to_string(c.residual) + (c.residual_is_out ? " (out)" : "") +
         " x_view=" + std::to_string(c.x_view) + " w_view=" + std::to_string(c.w_view);
}

// out = [residual +] [gelu(u) of u = round(v) | v], v = x W^T + b, checked element by element:
//   v (or u, the stored pre-activation) against the exact v, with product_bound;
//   out against the reference built on the pre-activation as the kernel stored it (the GELU reads
//   the rounded u), with the GELU kernel's error, one f32 add for the residual and one rounding.
//   Without a stored pre-activation, u is recovered by rounding the exact v: where that lands on
//   the other neighbour the comparison widens by gelu's slope (< 1.13) times u16 |v| + the v error.
void check_linear(DType dtype, const LinearCase& c, int64_t M, int64_t N, int64_t K, Generator& gen) {
  Tensor x = c.x_view ? random_half({K, M}, dtype, gen).transpose(0, 1) : random_half({M, K}, dtype, gen);
  Tensor w = c.w_view ? random_half({K, N}, dtype, gen).transpose(0, 1) : random_half({N, K}, dtype, gen);
  Tensor bias = c.bias ? random_half({N}, dtype, gen) : Tensor();
  Tensor out = c.residual_is_out ? random_half({M, N}, dtype, gen) : nan_half({M, N}, dtype);
  ops::LinearEpilogue epilogue;
  epilogue.gelu = c.gelu;
  if (c.pre_gelu) epilogue.pre_gelu = nan_half({M, N}, dtype);
  if (c.residual) epilogue.residual = c.residual_is_out ? out : random_half({M, N}, dtype, gen);
  const std::vector<double> residual = c.residual ? values(epilogue.residual) : std::vector<double>();
  ops::linear(out, x, w, bias, epilogue);

  const std::vector<double> X = values(x), W = values(w), b = c.bias ? values(bias) : std::vector<double>();
  const std::vector<double> got = values(out), pre = c.pre_gelu ? values(epilogue.pre_gelu) : std::vector<double>();
  const double u16 = unit_roundoff(dtype);
  int failures = 0;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      const size_t at = static_cast<size_t>(i * N + j);
      double v = c.bias ? b[static_cast<size_t>(j)] : 0.0, magnitude = std::fabs(v);
      for (int64_t k = 0; k < K; k++) {
        v += X[static_cast<size_t>(i * K + k)] * W[static_cast<size_t>(j * K + k)];
        magnitude += std::fabs(X[static_cast<size_t>(i * K + k)] * W[static_cast<size_t>(j * K + k)]);
      }
      const double v_bound = product_bound(dtype, K, v, magnitude);
      double want = v, bound = v_bound;
      if (c.pre_gelu && !(std::fabs(pre[at] - v) <= v_bound) && failures++ < 5)
        ADD_FAILURE() << describe(c) << ": pre_gelu (" << i << ", " << j << ") got " << pre[at] << ", want " << v;
      if (c.gelu) {
        double u = c.pre_gelu ? pre[at] : v;
        want = gelu_ref(u);
        bound = gelu_bound(u) + (c.pre_gelu ? 0.0 : 1.13 * v_bound);
      } else if (!c.residual) {
        bound = v_bound;
      }
      if (c.residual) {
        want += residual[at];
        bound += kU32 * std::fabs(want);  // the f32 add
      }
      // The final rounding (already inside v_bound when nothing follows the GEMM).
      if (c.gelu || c.residual) bound += u16 * (std::fabs(want) + bound) + subnormal_atol(dtype);
      if (!(std::fabs(got[at] - want) <= bound) && failures++ < 5)
        ADD_FAILURE() << describe(c) << ": out (" << i << ", " << j << ") got " << got[at] << ", want " << want
                      << " +- " << bound;
    }
}

TEST_P(GemmHalf, LinearEveryEpilogue) {
  Generator gen(201);
  const LinearCase cases[] = {
      {false, false, false, false, false, false, false}, {true, false, false, false, false, false, false},
      {true, true, false, false, false, false, false},   {true, true, true, false, false, false, false},
      {false, true, true, false, false, false, false},   {true, false, false, true, false, false, false},
      {true, false, false, true, true, false, false},    {true, true, true, true, false, false, false},
      {false, true, false, true, true, false, false},    {true, false, false, false, false, true, false},
      {true, true, true, false, false, false, true},     {true, false, false, true, false, true, true},
  };
  const int64_t shapes[][3] = {{1, 1, 1}, {13, 47, 29}, {30, 33, 130}};
  for (const LinearCase& c : cases)
    for (const auto& s : shapes) check_linear(dtype(), c, s[0], s[1], s[2], gen);
}

// With GELU or a residual the f32 v is formed a band of rows at a time (ops/gemm.cpp: about 4 MiB
// of f32, in multiples of 64 rows): N = 4200 gives bands of 192 rows, so M = 400 has two whole bands
// and a partial one, with x stored either way round (a transposed x starts a band at a column).
TEST_P(GemmHalf, LinearEpilogueAcrossRowBands) {
  Generator gen(202);
  const LinearCase cases[] = {
      {true, true, true, false, false, true, false},
      {true, false, false, true, true, false, false},
  };
  for (const LinearCase& c : cases) check_linear(dtype(), c, 400, 4200, 5, gen);
}

// The output is rounded once, after the bias or the residual is added in f32. With s the spacing
// of the 16-bit type above 1 (2^-7 bf16, 2^-10 f16): x W^T = 1 + 3s/8 (exact in f32) plus s/4 is
// 1 + 5s/8, which rounds to 1 + s; rounding x W^T first would give 1, and 1 + s/4 rounds to 1.
TEST_P(GemmHalf, BiasAndResidualAddedBeforeTheOneRounding) {
  const float s = dtype() == DType::BF16 ? std::ldexp(1.0f, -7) : std::ldexp(1.0f, -10);
  Tensor x = Tensor::from_vector({1.0f, 3 * s / 8}, {1, 2}, dtype());
  Tensor w = Tensor::from_vector({1.0f, 1.0f}, {1, 2}, dtype());
  Tensor quarter = Tensor::from_vector({s / 4}, {1, 1}, dtype());
  Tensor out = nan_half({1, 1}, dtype());
  ops::linear(out, x, w, quarter.view({1}));
  EXPECT_EQ(out.to_vector()[0], 1.0f + s) << "bias";
  ops::LinearEpilogue epilogue;
  epilogue.residual = quarter;
  Tensor out2 = nan_half({1, 1}, dtype());
  ops::linear(out2, x, w, Tensor(), epilogue);
  EXPECT_EQ(out2.to_vector()[0], 1.0f + s) << "residual";
  Tensor acc = quarter.clone();  // matmul with beta = 1 onto s/4
  ops::matmul(acc, x, w, false, true, 1.0f);
  EXPECT_EQ(acc.to_vector()[0], 1.0f + s) << "beta = 1";
}

TEST_P(GemmHalf, BiasRowsAndColumnSums) {
  Generator gen(202);
  for (int64_t M : {1, 7, 300}) {
    const int64_t N = 45;
    Tensor bias = random_half({N}, dtype(), gen), rows = nan_half({M, N}, dtype());
    ops::broadcast_rows(rows, bias);
    const std::vector<float> b = bias.to_vector(), r = rows.to_vector();
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) ASSERT_EQ(r[static_cast<size_t>(i * N + j)], b[static_cast<size_t>(j)]);
    // dbias += column sums: M f32 additions onto the widened dbias, one rounding (product_bound with K = M).
    Tensor dout = random_half({M, N}, dtype(), gen), dbias = random_half({N}, dtype(), gen);
    const std::vector<double> d = values(dout), before = values(dbias);
    ops::column_sums_accumulate(dbias, dout);
    const std::vector<double> got = values(dbias);
    for (int64_t j = 0; j < N; j++) {
      double exact = before[static_cast<size_t>(j)], magnitude = std::fabs(exact);
      for (int64_t i = 0; i < M; i++) {
        exact += d[static_cast<size_t>(i * N + j)];
        magnitude += std::fabs(d[static_cast<size_t>(i * N + j)]);
      }
      EXPECT_NEAR(got[static_cast<size_t>(j)], exact, product_bound(dtype(), M, exact, magnitude))
          << "M=" << M << " j=" << j;
    }
  }
}

// ---- autograd: the backward products, as the autograd functions call them -------------------

// Gradient buffers keep the parameter's dtype (as on CUDA) and start at zero, so each gradient is
// one GEMM (or column sum) rounded once: dx = dy W (K = OUT), dW = dy^T x (K = rows), db = column
// sums of dy (K = rows), each against its double reference with product_bound.
TEST_P(GemmHalf, LinearBackwardProductsAreTheRightOnes) {
  Generator gen(301);
  const int64_t B = 2, T = 11, IN = 37, OUT = 21;
  Tensor x = random_half({B, T, IN}, dtype(), gen).requires_grad_(true);
  Tensor w = random_half({OUT, IN}, dtype(), gen).requires_grad_(true);
  Tensor b = random_half({OUT}, dtype(), gen).requires_grad_(true);
  Tensor y = linear(x, w, b);
  ASSERT_EQ(y.dtype(), dtype());
  Tensor dy = random_half({B, T, OUT}, dtype(), gen);
  backward(y, dy);
  ASSERT_EQ(w.grad().dtype(), dtype());
  ASSERT_EQ(b.grad().dtype(), dtype());
  ASSERT_EQ(x.grad().dtype(), dtype());
  const int64_t rows = B * T;
  Tensor dy2 = dy.view({rows, OUT}), x2 = x.detach().view({rows, IN});
  expect_product(x.grad().view({rows, IN}), dy2, false, w.detach(), false, 0.0f, {}, dtype(), "dx = dy W");
  expect_product(w.grad(), dy2, true, x2, false, 0.0f, {}, dtype(), "dW = dy^T x");
  const std::vector<double> d = values(dy2), db = values(b.grad());
  for (int64_t j = 0; j < OUT; j++) {
    double exact = 0, magnitude = 0;
    for (int64_t i = 0; i < rows; i++) {
      exact += d[static_cast<size_t>(i * OUT + j)];
      magnitude += std::fabs(d[static_cast<size_t>(i * OUT + j)]);
    }
    EXPECT_NEAR(db[static_cast<size_t>(j)], exact, product_bound(dtype(), rows, exact, magnitude)) << "db " << j;
  }
}

TEST_P(GemmHalf, MatmulBackwardProductsAreTheRightOnes) {
  Generator gen(302);
  // 2-D: da = dy b^T, db = a^T dy.
  Tensor a = random_half({9, 14}, dtype(), gen).requires_grad_(true);
  Tensor b = random_half({14, 19}, dtype(), gen).requires_grad_(true);
  Tensor dy = random_half({9, 19}, dtype(), gen);
  backward(matmul(a, b), dy);
  ASSERT_EQ(a.grad().dtype(), dtype());
  expect_product(a.grad(), dy, false, b.detach(), true, 0.0f, {}, dtype(), "da = dy b^T");
  expect_product(b.grad(), a.detach(), true, dy, false, 0.0f, {}, dtype(), "db = a^T dy");
  // Batched: the same per item.
  Tensor a3 = random_half({3, 5, 8}, dtype(), gen).requires_grad_(true);
  Tensor b3 = random_half({3, 8, 6}, dtype(), gen).requires_grad_(true);
  Tensor dy3 = random_half({3, 5, 6}, dtype(), gen);
  backward(matmul(a3, b3), dy3);
  expect_product(a3.grad(), dy3, false, b3.detach(), true, 0.0f, {}, dtype(), "batched da");
  expect_product(b3.grad(), a3.detach(), true, dy3, false, 0.0f, {}, dtype(), "batched db");
}

// ---- bad input ---------------------------------------------------------------------------------

TEST(GemmHalfErrors, MixedAndIntegerDtypesAreNamed) {
  Tensor a = Tensor::zeros({2, 3}, DType::BF16), b = Tensor::zeros({3, 4}, DType::F32);
  Tensor out = Tensor::zeros({2, 4}, DType::BF16);
  EXPECT_ERROR_MENTIONS(ops::matmul(out, a, b), "matmul", "b has dtype f32", "a has bf16");
  Tensor ai = Tensor::zeros({2, 3}, DType::I32), bi = Tensor::zeros({3, 4}, DType::I32);
  Tensor oi = Tensor::zeros({2, 4}, DType::I32);
  EXPECT_ERROR_MENTIONS(ops::matmul(oi, ai, bi), "matmul", "a has dtype i32", "expected f32, bf16 or f16");
  Tensor x = Tensor::zeros({2, 3}, DType::F16), w = Tensor::zeros({4, 3}, DType::F16);
  Tensor y = Tensor::zeros({2, 4}, DType::F16);
  Tensor bias = Tensor::zeros({4}, DType::BF16);
  EXPECT_ERROR_MENTIONS(ops::linear(y, x, w, bias), "linear", "bias has dtype bf16", "x has f16");
  Tensor dbias = Tensor::zeros({4}, DType::F16), dout = Tensor::zeros({2, 4}, DType::BF16);
  EXPECT_ERROR_MENTIONS(ops::column_sums_accumulate(dbias, dout), "column_sums_accumulate", "dout has dtype bf16");
}

}  // namespace
