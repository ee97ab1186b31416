// The element-wise check every CPU-vs-CUDA comparison goes through (tests/cuda_test_util.h). It
// runs on the CPU, so it is tested here, where a failure cannot hide behind a missing GPU: one bad
// element among many is caught and named, values within the bound pass, and the tolerance
// arithmetic is what its comment states.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "tests/cuda_test_util.h"

using namespace tg;

namespace {

// 100,000 values near 1 and their copies moved by `rel` of themselves.
std::vector<float> ramp(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) v[static_cast<size_t>(i)] = 1.0f + static_cast<float>(i) / static_cast<float>(n);
  return v;
}

}  // namespace

TEST(CudaTestUtil, OneBadElementAmongAHundredThousandIsCaughtAndNamed) {
  const std::vector<float> ref = ramp(100000);
  std::vector<float> out = ref;
  // Every element off by 1e-4 relative: inside rtol 2^-11 (4.9e-4); element 73,251 off by 1e-2.
  for (float& x : out) x *= 1.0f + 1e-4f;
  out[73251] = ref[73251] * 1.01f;
  const test::Tolerance tol{0.0, std::ldexp(1.0, -11)};
  const test::ElementwiseReport r = test::compare_elementwise(out, ref, tol);
  EXPECT_EQ(r.count, 100000);
  EXPECT_EQ(r.violations, 1);
  EXPECT_EQ(r.worst, 73251);
  EXPECT_EQ(r.out, out[73251]);
  EXPECT_EQ(r.ref, ref[73251]);
  EXPECT_DOUBLE_EQ(r.bound, tol.rtol * std::fabs(static_cast<double>(ref[73251])));
  // The norm-wise error of the same pair is ~1e-4: the bad element moves it by 3e-5 only.
  const Tensor a = Tensor::from_vector(out, {100000}), b = Tensor::from_vector(ref, {100000});
  EXPECT_LT(test::rel_error(a, b), tol.rtol);
  const ::testing::AssertionResult verdict = test::elementwise_close(a, b, tol);
  EXPECT_FALSE(verdict);
  const std::string message = verdict.message();
  for (const char* part : {"1 of 100000", "index 73251", "bound"})
    EXPECT_NE(message.find(part), std::string::npos) << message;
}

TEST(CudaTestUtil, ValuesWithinTheBoundPass) {
  const std::vector<float> ref = ramp(1000);
  std::vector<float> out = ref;
  for (float& x : out) x *= 1.0f + 4e-4f;  // under 2^-11 = 4.88e-4 of each value
  out[5] = ref[5];
  const test::Tolerance tol{0.0, std::ldexp(1.0, -11)};
  const test::ElementwiseReport r = test::compare_elementwise(out, ref, tol);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.violations, 0);
  EXPECT_NE(r.worst, 5);  // an exact element is never the worst while others differ
  EXPECT_TRUE(test::elementwise_close(Tensor::from_vector(out, {1000}), Tensor::from_vector(ref, {1000}), tol));
}

// Near zero only atol holds; NaN in the output always fails (a poisoned element left unwritten),
// equal infinities pass, and a shape mismatch is reported as such.
TEST(CudaTestUtil, AtolNaNInfinityAndShape) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const test::Tolerance tol{1e-6, 1e-3};
  EXPECT_TRUE(test::compare_elementwise({0.0f, 5e-7f, -inf}, {1e-7f, -4e-7f, -inf}, tol).ok());
  EXPECT_EQ(test::compare_elementwise({0.0f, 3e-6f}, {0.0f, 0.0f}, tol).violations, 1);
  const test::ElementwiseReport poisoned = test::compare_elementwise({1.0f, nan, 2.0f, 1e9f}, {1.0f, 1.0f, 2.0f, 1.0f}, tol);
  EXPECT_EQ(poisoned.violations, 2);
  EXPECT_EQ(poisoned.worst, 1);  // NaN ranks past the finite miss at index 3
  EXPECT_EQ(test::compare_elementwise({nan}, {nan}, tol).violations, 1);
  EXPECT_EQ(test::compare_elementwise({inf}, {-inf}, tol).violations, 1);
  const ::testing::AssertionResult shapes =
      test::elementwise_close(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}), tol);
  EXPECT_FALSE(shapes);
  EXPECT_NE(std::string(shapes.message()).find("(2, 3)"), std::string::npos) << shapes.message();
}

// f32_tolerance is the arithmetic its comment states: one rounding of R plus f32 ulps relative,
// and 2 (n - 1) u sum_abs absolute, both grown by (1 + R), plus the subnormal half-spacing.
TEST(CudaTestUtil, F32ToleranceIsTheStatedFormula) {
  const double u = std::ldexp(1.0, -24);
  const test::Tolerance f32 = test::f32_tolerance(DType::F32, 4);
  EXPECT_DOUBLE_EQ(f32.rtol, 4 * u);
  EXPECT_DOUBLE_EQ(f32.atol, std::ldexp(1.0, -150));
  const double R = std::ldexp(1.0, -8);
  const test::Tolerance bf16 = test::f32_tolerance(DType::BF16, 2, 65, 10.0);
  EXPECT_DOUBLE_EQ(bf16.rtol, (R + 2 * u) * (1 + R));
  EXPECT_DOUBLE_EQ(bf16.atol, 2 * 64 * u * 10.0 * (1 + R) + std::ldexp(1.0, -134));
  EXPECT_DOUBLE_EQ(test::f32_tolerance(DType::F16, 0).atol, std::ldexp(1.0, -25));
}
