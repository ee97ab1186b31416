// CUDA sums and means (over everything and over one dimension, forward and backward, and sum_to)
// against the CPU kernels on the same rounded inputs, in f32, bf16 and f16, with poisoned outputs;
// determinism (bit-identical reruns, and the same bits from the 16-byte and element load paths).
// Plus the CPU-side contract: half precision on the CPU is a clear error.
//
// Tolerances are relative errors, checked in norm (test::rel_error) and element by element
// (test::elementwise_close): each bound below holds for every element. One rounding into a format
// with p significand bits moves a value by at most u = 2^-p of itself (f32 24, bf16 8, f16 11).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/reduce.h"
#include "ops/reduce.h"
#include "tensor/tensor.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

double roundoff(DType dtype) { return test::unit_roundoff(dtype); }

// Sums of positive terms (no cancellation, so worst-case bounds apply): the GPU's f32 result is
// within 136 f32 roundings of the exact sum (ops/cuda/reduce.cu{,h}: rows 32 + 8 + 1 + 8, columns
// 1024 / 8 + 8), the CPU's within 271 (a 4096-float block summed in 16 SIMD lanes of 256, then
// the lanes; columns: 64), so the two differ by at most ~410 u_f32 = 2.4e-5 of the sum: 3e-5. Then
// one rounding to the dtype.
double sum_tolerance(DType dtype) { return roundoff(dtype) + 3e-5; }

// Values in [0.5, 1.5) / 64, rounded to `dtype`: positive (see above), and small enough that a sum
// of 10^6 of them stays inside f16's range (65504).
Tensor positive(const Shape& shape, Generator& gen, DType dtype) {
  Tensor x = Tensor::rand(shape, &gen);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); i++) p[i] = (p[i] + 0.5f) / 64.0f;
  return x.to(dtype).to(DType::F32);
}

// A relative bound that holds per element, with the subnormal half-spacing of up to four
// roundings as its floor.
test::Tolerance per_element(DType dtype, double relative) {
  return {4 * test::subnormal_half_spacing(dtype), relative};
}

// dinp0 + scale dout, which one side may fuse into an FMA: the two differ by up to an f32 ulp of
// each term (2 u (max |dinp0| + |scale| max |dout|), u = 2^-24), not of the sum, which may cancel;
// then one rounding to the dtype.
test::Tolerance added_tolerance(DType dtype, const Tensor& dinp0, const Tensor& dout, double scale) {
  double a = 0, b = 0;
  for (float v : dinp0.to_vector()) a = std::max(a, std::fabs(static_cast<double>(v)));
  for (float v : dout.to_vector()) b = std::max(b, std::fabs(static_cast<double>(v)));
  const double R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  const double d = 2 * std::ldexp(1.0, -24) * (a + std::fabs(scale) * b);
  return {d * (1 + R) + test::subnormal_half_spacing(dtype), R};
}

Shape without(const Shape& shape, int64_t dim) {
  Shape out = shape;
  out.erase(out.begin() + dim);
  return out;
}

std::vector<float> bits_of(const Tensor& t) { return t.to_vector(); }
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// (shape, dim): contiguous rows of every length class (one element; short rows, where the block
// shrinks to 32 threads; rows split into several 8192-element chunks, with outer > 1) and column
// sums (few outputs and many rows, where the rows split into chunks; many outputs; 1 row).
const std::vector<std::pair<Shape, int64_t>>& dim_cases() {
  static const std::vector<std::pair<Shape, int64_t>> cases = {
      {{1}, 0},        {{7}, 0},         {{33, 257}, 1},   {{16384, 7}, 1}, {{4, 9000}, 1},  {{3, 100003}, 1},
      {{33, 257}, 0},  {{1000, 16}, 0},  {{3, 1000, 5}, 1}, {{5000, 3}, 0},  {{1, 300}, 0},   {{2, 3, 4099}, 2},
  };
  return cases;
}

}  // namespace

// ---- CPU-runnable: the dtype contract -------------------------------------------------------

// Half precision runs on the CPU too (tests/test_half_ops.cpp); mixed dtypes are refused by name.
TEST(CudaReduce, MixedDtypesAreAClearError) {
  Tensor x = Tensor::ones({2, 3}, DType::BF16);
  Tensor out = Tensor::empty({}, DType::F32);
  EXPECT_ERROR_MENTIONS(ops::sum_forward(out, x), "sum", "bf16", "f32");
}

// ---- GPU against CPU ------------------------------------------------------------------------

TEST(CudaReduce, SumAndMeanOfEverythingMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(1);
  for (DType dtype : test::cuda_float_dtypes())
    for (int64_t n : {1, 7, 1000, 8192, 8193, 100003, (1 << 20) + 3})
      for (bool is_mean : {false, true}) {
        Tensor x = positive({n}, gen, dtype);
        float scale = is_mean ? 1.0f / static_cast<float>(n) : 1.0f;
        Tensor ref = Tensor::empty({}), out = test::poisoned({}, dtype);
        ops::sum_forward(ref, x, scale);
        ops::sum_forward(out, test::to_device(x, dtype), scale);
        EXPECT_LT(test::rel_error(out, ref), sum_tolerance(dtype))
            << (is_mean ? "mean " : "sum ") << dtype_name(dtype) << " n=" << n;
        EXPECT_TRUE(test::elementwise_close(out, ref, per_element(dtype, sum_tolerance(dtype))))
            << (is_mean ? "mean " : "sum ") << dtype_name(dtype) << " n=" << n;
      }
}

TEST(CudaReduce, SumOverOneDimensionMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(2);
  for (DType dtype : test::cuda_float_dtypes())
    for (const auto& [shape, dim] : dim_cases()) {
      Tensor x = positive(shape, gen, dtype);
      float scale = 1.0f / static_cast<float>(shape[dim]);  // a mean: scale on the way out
      Tensor ref = Tensor::empty(without(shape, dim)), out = test::poisoned(without(shape, dim), dtype);
      ops::sum_dim_forward(ref, x, dim, scale);
      ops::sum_dim_forward(out, test::to_device(x, dtype), dim, scale);
      EXPECT_LT(test::rel_error(out, ref), sum_tolerance(dtype))
          << dtype_name(dtype) << " " << shape_str(shape) << " dim " << dim;
      EXPECT_TRUE(test::elementwise_close(out, ref, per_element(dtype, sum_tolerance(dtype))))
          << dtype_name(dtype) << " " << shape_str(shape) << " dim " << dim;
    }
}

// dinp += scale * dout broadcast: one multiply and one add on identical inputs (2 f32 ulps for a
// possibly fused multiply-add), then one rounding.
TEST(CudaReduce, BackwardMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(3);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (const auto& [shape, dim] : dim_cases()) {
      Tensor dout = test::rounded_randn(without(shape, dim), gen, dtype), dinp0 = test::rounded_randn(shape, gen, dtype);
      Tensor ref = dinp0.clone(), got = test::to_device(dinp0, dtype);
      ops::sum_dim_backward(ref, dout, dim, 0.5f);
      ops::sum_dim_backward(got, test::to_device(dout, dtype), dim, 0.5f);
      EXPECT_LT(test::rel_error(got, ref), roundoff(dtype) + 2e-7)
          << dtype_name(dtype) << " " << shape_str(shape) << " dim " << dim;
      EXPECT_TRUE(test::elementwise_close(got, ref, added_tolerance(dtype, dinp0, dout, 0.5)))
          << dtype_name(dtype) << " " << shape_str(shape) << " dim " << dim;
    }
    for (int64_t n : {1, 7, 100003}) {
      Tensor dout = test::rounded_randn({}, gen, dtype), dinp0 = test::rounded_randn({n}, gen, dtype);
      Tensor ref = dinp0.clone(), got = test::to_device(dinp0, dtype);
      ops::sum_backward(ref, dout, 1.0f / static_cast<float>(n));
      ops::sum_backward(got, test::to_device(dout, dtype), 1.0f / static_cast<float>(n));
      EXPECT_LT(test::rel_error(got, ref), roundoff(dtype) + 2e-7) << dtype_name(dtype) << " all, n=" << n;
      EXPECT_TRUE(test::elementwise_close(got, ref, added_tolerance(dtype, dinp0, dout, 1.0 / static_cast<double>(n))))
          << dtype_name(dtype) << " all, n=" << n;
    }
  }
}

// Summing down to a broadcast operand's shape: (3, 4, 5) -> (4, 1) reduces dimensions 0 and 2, two
// separate passes, each rounded in half precision.
TEST(CudaReduce, SumToMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(4);
  for (DType dtype : test::cuda_float_dtypes()) {
    Tensor x = positive({3, 4, 5}, gen, dtype);
    Tensor ref = ops::sum_to(x, {4, 1}), got = ops::sum_to(test::to_device(x, dtype), {4, 1});
    EXPECT_EQ(got.dtype(), dtype);
    EXPECT_EQ(got.shape(), Shape({4, 1}));
    EXPECT_LT(test::rel_error(got, ref), 2 * roundoff(dtype) + 3e-5) << dtype_name(dtype);
    EXPECT_TRUE(test::elementwise_close(got, ref, per_element(dtype, 2 * roundoff(dtype) + 3e-5))) << dtype_name(dtype);
  }
}

// No atomics and a cut fixed by the shape: a rerun gives the same bits, for every kind of plan.
TEST(CudaReduce, SumsAreDeterministic) {
  TG_REQUIRE_GPU();
  Generator gen(5);
  for (DType dtype : test::cuda_float_dtypes())
    for (const auto& [shape, dim] : std::vector<std::pair<Shape, int64_t>>{
             {{(1 << 20) + 3}, 0}, {{4, 9000}, 1}, {{5000, 3}, 0}, {{16384, 96}, 0}}) {
      Tensor x = test::to_device(test::rounded_randn(shape, gen, dtype), dtype);
      std::vector<float> first;
      for (int run = 0; run < 3; run++) {
        Tensor out = test::poisoned(without(shape, dim), dtype);
        ops::sum_dim_forward(out, x, dim, 1.0f);
        if (run == 0) {
          first = bits_of(out);
        } else {
          EXPECT_TRUE(same_bits(first, bits_of(out))) << dtype_name(dtype) << " " << shape_str(shape) << " run " << run;
        }
      }
    }
}

// The row kernel reads 16-byte packs when every row starts aligned and element by element
// otherwise, in the same order: the same values one element off an aligned start give the same bits.
TEST(CudaReduce, VectorAndElementPathsGiveTheSameBits) {
  TG_REQUIRE_GPU();
  Generator gen(6);
  for (DType dtype : test::cuda_float_dtypes())
    for (const Shape& shape : {Shape{4, 9000}, Shape{1, 100000}, Shape{64, 256}}) {
      Tensor x = test::rounded_randn(shape, gen, dtype);
      Tensor aligned = test::to_device(x, dtype);
      // The same values at an odd offset: a flat buffer one longer, viewed from element 1.
      Tensor padded = Tensor::zeros({x.numel() + 1}, dtype, test::gpu());
      Tensor shifted = padded.slice(0, 1, x.numel() + 1).view(shape);
      shifted.copy_(aligned);
      Tensor out_aligned = test::poisoned({shape[0]}, dtype), out_shifted = test::poisoned({shape[0]}, dtype);
      ops::sum_dim_forward(out_aligned, aligned, 1, 1.0f);
      ops::sum_dim_forward(out_shifted, shifted, 1, 1.0f);
      EXPECT_TRUE(same_bits(bits_of(out_aligned), bits_of(out_shifted))) << dtype_name(dtype) << " " << shape_str(shape);
    }
}

// The differentiable calls keep the dtype on the GPU; the gradient of a mean is 1/n everywhere.
TEST(CudaReduce, AutogradOnTheGpuKeepsDtype) {
  TG_REQUIRE_GPU();
  Generator gen(7);
  for (DType dtype : test::cuda_float_dtypes()) {
    Tensor x0 = positive({6, 40}, gen, dtype);
    Tensor x = test::to_device(x0, dtype).requires_grad_(true);
    Tensor m = mean(x, 1, true);
    EXPECT_EQ(m.dtype(), dtype);
    EXPECT_EQ(m.shape(), Shape({6, 1}));
    EXPECT_LT(test::rel_error(m, mean(x0, 1, true)), sum_tolerance(dtype)) << dtype_name(dtype);
    EXPECT_TRUE(test::elementwise_close(m, mean(x0, 1, true), per_element(dtype, sum_tolerance(dtype))))
        << dtype_name(dtype);
    backward(m, Tensor::ones({6, 1}, dtype, test::gpu()));
    ASSERT_TRUE(x.grad().defined());
    EXPECT_EQ(x.grad().dtype(), dtype);
    // 1/40 rounded once to the dtype.
    EXPECT_LT(test::rel_error(x.grad(), Tensor::full({6, 40}, 1.0f / 40.0f)), roundoff(dtype)) << dtype_name(dtype);
    EXPECT_TRUE(test::elementwise_close(x.grad(), Tensor::full({6, 40}, 1.0f / 40.0f), per_element(dtype, roundoff(dtype))))
        << dtype_name(dtype);
    Tensor s = sum(x);
    EXPECT_EQ(s.dtype(), dtype);
    EXPECT_EQ(s.dim(), 0);
  }
}
