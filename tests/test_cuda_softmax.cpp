// CUDA softmax and log-softmax over the last dimension (forward and backward, the warp-per-row and
// block-per-row kernels) against the CPU kernels on the same rounded inputs, in f32, bf16 and f16,
// with poisoned outputs; non-finite rows behave as on the CPU. Plus the CPU-side contract: half
// precision on the CPU is a clear error.
//
// Tolerances: norm-wise relative errors (test::rel_error) and element-wise bounds
// (test::elementwise_close, see softmax_bounds); one rounding into a format with p significand bits
// moves a value by at most u = 2^-p of itself (f32 24, bf16 8, f16 11).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/softmax.h"
#include "ops/softmax.h"
#include "tensor/tensor.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

double roundoff(DType dtype) { return test::unit_roundoff(dtype); }

// f16 has a narrow exponent range: probabilities below 2^-14 land on subnormals, whose spacing is
// 2^-24, so each output may be off by 2^-25 absolutely on top of the relative u. Over the n outputs
// that is at most 2^-25 sqrt(n) in norm, relative to ||ref||. (bf16 keeps f32's range.)
double subnormal_floor(DType dtype, const Tensor& ref) {
  if (dtype != DType::F16) return 0.0;
  double norm = 0;
  for (float v : ref.to_vector()) norm += static_cast<double>(v) * v;
  return norm == 0 ? 0.0 : std::ldexp(1.0, -25) * std::sqrt(static_cast<double>(ref.numel()) / norm);
}

// The f32 difference between the devices. Forward: exp is within 2 ulp on each side; the row sum
// of exponentials (positive) carries at most C/32 + 5 (warp) or C/256 + 8 (block) roundings on the
// GPU and 80 on the CPU (1024-float blocks in 16 SIMD lanes): with C = 50257 that is 205 + 80, so
// with the divisions about 300 u_f32 = 1.8e-5 relative; log_softmax's log s differs by as much
// absolutely, small against |x - max - log s| ~ 5 for these logits. Backward: softmax's
// sum(dout * out) errs by at most the same count times max |dout| (the outputs sum to 1), spread by
// out (<= 1) over rows whose random starting gradient has norm ~ sqrt(C); log_softmax's sum(dout)
// is exact (see exact_gradients). 2e-5 holds all of it.
constexpr double kF32 = 2e-5;

// Roundings in one row sum of C terms: on the GPU C/32 + 5 (warp per row, C <= 1024) or C/256 + 8
// (block per row), on the CPU at most 64 per SIMD lane within a 1024-float block, one per block and
// 16 to combine the lanes (see kF32).
double sum_roundings(int64_t C) {
  const double c = static_cast<double>(C);
  return (C <= 1024 ? c / 32 + 5 : c / 256 + 8) + 64 + c / 1024 + 16;
}

// Element-wise bounds, u = 2^-24, n = sum_roundings(C), per row:
//   softmax p_i = exp(x_i - max) / s: x_i - max rounds within u |x_i - max|, which exp turns into
//     that much relative, and exp is within 2 ulp per side; s (positive terms) within n u relative;
//     the division one rounding per side: d = (2 |x_i - max| + 4 + n + 2) u p_i.
//   log_softmax x_i - max - log s: s's relative n u is that much absolute in log s, plus log's
//     2 ulp of log s and the two subtractions' roundings: d = (n + 4) u + 2 u |log s| + 2 u |out_i|
//     + 2 u |x_i - max|.
//   softmax backward dinp0 + y_i (dout_i - sum_j dout_j y_j): the dot sums C products within
//     n u max |dout| (the y sum to 1) per side, the difference and the products u each of their
//     terms, the final add 2 u (|dinp0| + |term|).
//   log_softmax backward dinp0 + dout_i - exp(y_i) sum_j dout_j: the sum is exact (exact_gradients),
//     exp within 2 ulp per side: 4 u exp(y_i) |sum|, then 2 u of each term of the two additions.
// Then the GPU rounds once to the dtype: + R (|ref| + d) + the subnormal half-spacing.
std::vector<double> softmax_bounds(const std::string& name, bool backward, DType dtype, const Tensor& x_t,
                                   const Tensor& y_t, const Tensor& dout_t, const Tensor& dinp0_t, const Tensor& ref_t) {
  const double u = std::ldexp(1.0, -24), R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  const Shape& shape = ref_t.shape();
  const int64_t C = shape.back(), rows = C == 0 ? 0 : ref_t.numel() / C;
  const double n = sum_roundings(C);
  const std::vector<float> ref = ref_t.to_vector();
  const std::vector<float> x = backward ? std::vector<float>() : x_t.to_vector();
  const std::vector<float> y = backward ? y_t.to_vector() : std::vector<float>();
  const std::vector<float> g = backward ? dout_t.to_vector() : std::vector<float>();
  const std::vector<float> d0 = backward ? dinp0_t.to_vector() : std::vector<float>();
  std::vector<double> bounds(ref.size());
  for (int64_t r = 0; r < rows; r++) {
    const size_t base = static_cast<size_t>(r * C);
    double mx = -INFINITY, sum = 0, dot = 0, gmax = 0, gsum = 0;
    if (!backward) {
      for (int64_t c = 0; c < C; c++) mx = std::max(mx, static_cast<double>(x[base + c]));
      for (int64_t c = 0; c < C; c++) sum += std::exp(x[base + c] - mx);
    } else {
      for (int64_t c = 0; c < C; c++) {
        dot += static_cast<double>(g[base + c]) * y[base + c];
        gmax = std::max(gmax, std::fabs(static_cast<double>(g[base + c])));
        gsum += g[base + c];
      }
    }
    for (int64_t c = 0; c < C; c++) {
      const size_t i = base + static_cast<size_t>(c);
      double d;
      if (!backward && name == "softmax") {
        d = (2 * std::fabs(x[i] - mx) + 6 + n) * u * std::fabs(static_cast<double>(ref[i]));
      } else if (!backward) {
        d = (n + 4) * u + 2 * u * std::fabs(std::log(sum)) + 2 * u * std::fabs(static_cast<double>(ref[i])) +
            2 * u * std::fabs(x[i] - mx);
      } else if (name == "softmax") {
        const double term = y[i] * (g[i] - dot);
        d = std::fabs(y[i]) * (2 * n * u * gmax + 2 * u * (std::fabs(g[i]) + std::fabs(dot))) + 2 * u * std::fabs(term) +
            2 * u * (std::fabs(d0[i]) + std::fabs(term));
      } else {
        const double e = std::exp(static_cast<double>(y[i]));
        d = 4 * u * e * std::fabs(gsum) + 2 * u * (std::fabs(g[i]) + e * std::fabs(gsum)) +
            2 * u * (std::fabs(d0[i]) + std::fabs(g[i] - e * gsum));
      }
      bounds[i] = d + R * (std::fabs(static_cast<double>(ref[i])) + d) + test::subnormal_half_spacing(dtype);
    }
  }
  return bounds;
}

// Row lengths for both kernels: a warp per row up to 1024, a block per row beyond; 1 and 7 are
// shorter than a warp, 257 and 1000 not multiples of it, 50257 is GPT-2's vocabulary.
const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{1, 1},     {7, 7},     {33, 257}, {1000, 1000}, {5, 1024},
                                       {3, 1025},  {4, 5003},  {2, 50257}, {2, 3, 31}};
  return s;
}

// Gradients of the form k / 4, |k| <= 8: exact in every dtype, and any sum of up to 10^5 of them is
// exact in f32 (a multiple of 1/4 below 2^22), so log_softmax's sum(dout) is the same number on both
// devices whatever the order of the adds.
Tensor exact_gradients(const Shape& shape, Generator& gen) {
  Tensor g = Tensor::randn(shape, &gen);
  float* p = g.data<float>();
  for (int64_t i = 0; i < g.numel(); i++) p[i] = std::nearbyint(std::fmax(-8.0f, std::fmin(8.0f, 3.0f * p[i]))) / 4.0f;
  return g;
}

struct SoftmaxCase {
  const char* name;
  void (*forward)(Tensor&, const Tensor&);
  void (*backward)(Tensor&, const Tensor&, const Tensor&);
};

const std::vector<SoftmaxCase>& cases() {
  static const std::vector<SoftmaxCase> c = {
      {"softmax", ops::softmax_forward, ops::softmax_backward},
      {"log_softmax", ops::log_softmax_forward, ops::log_softmax_backward},
  };
  return c;
}

}  // namespace

// ---- CPU-runnable: the dtype contract -------------------------------------------------------

// Half precision runs on the CPU too (tests/test_half_ops.cpp); mixed dtypes are refused by name.
TEST(CudaSoftmax, MixedDtypesAreAClearError) {
  Tensor x = Tensor::ones({2, 3}, DType::BF16), dinp = Tensor::zeros({2, 3});
  EXPECT_ERROR_MENTIONS(ops::softmax_backward(dinp, x, x), "softmax_backward", "bf16", "f32");
}

// ---- GPU against CPU ------------------------------------------------------------------------

// Logits of standard deviation 3 (peaked rows, many tiny probabilities). Forward: the f32 bound,
// one rounding, and f16's subnormal floor. Backward, from the CPU's forward output rounded to the
// dtype, into a random start (checks +=): the same.
TEST(CudaSoftmax, ForwardAndBackwardMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(1);
  for (DType dtype : test::cuda_float_dtypes())
    for (const SoftmaxCase& op : cases())
      for (const Shape& shape : shapes()) {
        std::string what = std::string(op.name) + " " + dtype_name(dtype) + " " + shape_str(shape);
        Tensor x = test::rounded_randn(shape, gen, dtype, 3.0f);
        Tensor ref = Tensor::empty(shape), out = test::poisoned(shape, dtype);
        op.forward(ref, x);
        op.forward(out, test::to_device(x, dtype));
        EXPECT_LT(test::rel_error(out, ref), roundoff(dtype) + kF32 + subnormal_floor(dtype, ref)) << what;
        EXPECT_TRUE(test::elementwise_close(out, ref, softmax_bounds(op.name, false, dtype, x, x, x, x, ref))) << what;

        Tensor y = ref.to(dtype).to(DType::F32);
        Tensor dout = exact_gradients(shape, gen), dinp0 = test::rounded_randn(shape, gen, dtype);
        Tensor dref = dinp0.clone(), dgot = test::to_device(dinp0, dtype);
        op.backward(dref, y, dout);
        op.backward(dgot, test::to_device(y, dtype), test::to_device(dout, dtype));
        EXPECT_LT(test::rel_error(dgot, dref), roundoff(dtype) + kF32 + subnormal_floor(dtype, dref)) << what << " backward";
        EXPECT_TRUE(test::elementwise_close(dgot, dref, softmax_bounds(op.name, true, dtype, x, y, dout, dinp0, dref)))
            << what << " backward";
      }
}

// Rows of -inf give NaN (0/0), a NaN or +inf anywhere makes the row NaN, and -inf entries next to
// finite ones get probability 0: the CPU's answers, in both kernels.
TEST(CudaSoftmax, NonFiniteRowsMatchCpu) {
  TG_REQUIRE_GPU();
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t C : {7, 2000}) {
    std::vector<float> values(static_cast<size_t>(4 * C));
    for (int64_t c = 0; c < C; c++) {
      values[c] = -inf;                                            // row 0: all -inf
      values[C + c] = c == C / 2 ? nan : 0.1f * static_cast<float>(c % 5);      // row 1: one NaN
      values[2 * C + c] = c == 1 ? inf : 0.1f * static_cast<float>(c % 3);      // row 2: one +inf
      values[3 * C + c] = c % 2 == 0 ? -inf : 0.2f * static_cast<float>(c % 7);  // row 3: half -inf
    }
    for (DType dtype : test::cuda_float_dtypes())
      for (const SoftmaxCase& op : cases()) {
        Tensor x = Tensor::from_vector(values, {4, C}).to(dtype).to(DType::F32);  // inf and NaN survive
        Tensor ref = Tensor::empty({4, C}), out = test::poisoned({4, C}, dtype);
        op.forward(ref, x);
        op.forward(out, test::to_device(x, dtype));
        std::vector<float> want = ref.to_vector(), got = out.to_vector();
        for (size_t i = 0; i < want.size(); i++) {
          std::string what = std::string(op.name) + " " + dtype_name(dtype) + " C=" + std::to_string(C) + " [" +
                             std::to_string(i / C) + ", " + std::to_string(i % C) + "]";
          if (std::isnan(want[i])) {
            EXPECT_TRUE(std::isnan(got[i])) << what << ": got " << got[i];
          } else {
            // One rounding of a finite value (or an exact 0 / -inf).
            EXPECT_TRUE(got[i] == want[i] || std::fabs(got[i] - want[i]) <= (roundoff(dtype) + kF32) * std::fabs(want[i]) + 1e-6)
                << what << ": got " << got[i] << ", want " << want[i];
          }
        }
      }
  }
}

// Huge logits: x - max is exact for the entries that matter, so log_softmax stays accurate where
// x - (max + log s) would round to f32's spacing near 1e4.
TEST(CudaSoftmax, HugeLogitsStayAccurate) {
  TG_REQUIRE_GPU();
  Generator gen(2);
  Tensor x = test::rounded_randn({16, 300}, gen, DType::F32, 1.0f);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); i++) p[i] += 1e4f;
  Tensor ref = Tensor::empty({16, 300}), out = test::poisoned({16, 300}, DType::F32);
  ops::log_softmax_forward(ref, x);
  ops::log_softmax_forward(out, test::to_device(x, DType::F32));
  EXPECT_LT(test::rel_error(out, ref), kF32);
  EXPECT_TRUE(test::elementwise_close(out, ref, softmax_bounds("log_softmax", false, DType::F32, x, x, x, x, ref)));
}

// The differentiable calls keep the dtype and device on the GPU.
TEST(CudaSoftmax, AutogradOnTheGpuKeepsDtype) {
  TG_REQUIRE_GPU();
  Generator gen(3);
  for (DType dtype : test::cuda_float_dtypes()) {
    Tensor x = test::to_device(test::rounded_randn({3, 40}, gen, dtype), dtype).requires_grad_(true);
    Tensor y = log_softmax(x);
    EXPECT_EQ(y.dtype(), dtype);
    EXPECT_TRUE(y.device().is_cuda());
    backward(y, Tensor::ones({3, 40}, dtype, test::gpu()));
    ASSERT_TRUE(x.grad().defined());
    EXPECT_EQ(x.grad().dtype(), dtype);
    EXPECT_EQ(softmax(x).dtype(), dtype);
  }
}
