// Pooling on CUDA against the CPU kernels (ops/cpu/pool.h), in f32, bf16 and f16, on awkward
// shapes: odd H and W, C not a multiple of 8, stride 2, padding, dilation, ceil mode, overlapping
// windows and adaptive bins. Outputs are poisoned with NaN before each launch.
//
// Bounds: the inputs are the CPU's f32 values rounded to the dtype, so both devices see the same
// numbers, and every GPU kernel adds in the CPU's order (see ops/cuda/pool.h):
//   max forward and argmax: a selection, no arithmetic: bit for bit in every dtype;
//   average forward: the window summed row by row in f32, then times the same f32 1 / divisor:
//     the CPU's f32 bits; the GPU then rounds once to the dtype (test::f32_tolerance(dtype, 0));
//   backward (dx pre-filled, +=): each input starts from dx and adds its windows' shares in the
//     CPU's order in f32, then rounds once: f32_tolerance(dtype, 0) again.
// Determinism: a second run gives the same bits.
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "ops/pool.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

Pool2dParams window(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh = 1,
                    int64_t dw = 1, bool ceil_mode = false, bool count_include_pad = true) {
  Pool2dParams p;
  p.kernel_h = kh, p.kernel_w = kw, p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw;
  p.dilation_h = dh, p.dilation_w = dw, p.ceil_mode = ceil_mode, p.count_include_pad = count_include_pad;
  return p;
}

// (N,H,W,C) inputs: odd sizes, C = 5, 13 and 64.
std::vector<Shape> image_shapes() { return {{2, 7, 9, 5}, {3, 8, 5, 13}, {2, 11, 11, 64}}; }

std::vector<Pool2dParams> max_windows() {
  return {window(2, 2, 2, 2, 0, 0), window(3, 3, 2, 2, 1, 1), window(3, 2, 1, 2, 1, 1, 2, 1, true),
          window(2, 3, 2, 2, 1, 1, 1, 2, true)};
}
std::vector<Pool2dParams> avg_windows() {
  return {window(2, 2, 2, 2, 0, 0), window(3, 3, 2, 2, 1, 1), window(3, 3, 2, 2, 1, 1, 1, 1, true, false),
          window(2, 3, 1, 2, 1, 1, 1, 1, true, true)};
}

}  // namespace

TEST(CudaPool, MaxForwardMatchesCpuBitForBit) {
  TG_REQUIRE_GPU();
  Generator gen(11);
  for (DType dtype : test::cuda_float_dtypes())
    for (const Shape& shape : image_shapes())
      for (const Pool2dParams& p : max_windows()) {
        Tensor x = test::rounded_randn(shape, gen, dtype);
        const Shape pooled = ops::pool2d_output_shape("test", x, p, true);
        Tensor ref = Tensor::empty(pooled), ref_argmax = Tensor::empty(pooled, DType::I32);
        ops::maxpool2d_forward(ref, ref_argmax, x, p);
        Tensor xg = test::to_device(x, dtype), out = test::poisoned(pooled, dtype);
        Tensor argmax = Tensor::full(pooled, 7.0f, DType::I32, test::gpu());
        ops::maxpool2d_forward(out, argmax, xg, p);
        EXPECT_TRUE(test::same_bits(out.to(DType::F32), ref)) << dtype_name(dtype) << " " << shape_str(shape);
        EXPECT_TRUE(test::same_bits(argmax, ref_argmax)) << dtype_name(dtype) << " " << shape_str(shape);
      }
}

TEST(CudaPool, MaxForwardPropagatesNanAndKeepsTheFirstTie) {
  TG_REQUIRE_GPU();
  // One image of 1 channel, 2x2 windows: a NaN, a tie and -inf.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  Tensor x = Tensor::from_vector({1, nan, 3, 3, 2, 2, -inf, -inf}, {1, 2, 4, 1});
  const Pool2dParams p = window(2, 2, 2, 2, 0, 0);
  Tensor ref = Tensor::empty({1, 1, 2, 1}), ref_argmax = Tensor::empty({1, 1, 2, 1}, DType::I32);
  ops::maxpool2d_forward(ref, ref_argmax, x, p);
  for (DType dtype : test::cuda_float_dtypes()) {
    Tensor out = test::poisoned({1, 1, 2, 1}, dtype), argmax = Tensor::zeros({1, 1, 2, 1}, DType::I32, test::gpu());
    ops::maxpool2d_forward(out, argmax, test::to_device(x, dtype), p);
    EXPECT_TRUE(test::same_bits(out.to(DType::F32), ref)) << dtype_name(dtype);
    EXPECT_TRUE(test::same_bits(argmax, ref_argmax)) << dtype_name(dtype);
  }
}

TEST(CudaPool, MaxBackwardMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(12);
  for (DType dtype : test::cuda_float_dtypes())
    for (const Shape& shape : image_shapes())
      for (const Pool2dParams& p : max_windows()) {
        Tensor x = test::rounded_randn(shape, gen, dtype);
        const Shape pooled = ops::pool2d_output_shape("test", x, p, true);
        Tensor y = Tensor::empty(pooled), argmax = Tensor::empty(pooled, DType::I32);
        ops::maxpool2d_forward(y, argmax, x, p);
        Tensor dout = test::rounded_randn(pooled, gen, dtype), dx0 = test::rounded_randn(shape, gen, dtype);
        Tensor ref = dx0.clone();
        ops::maxpool2d_backward(ref, dout, argmax);
        Tensor dx = test::to_device(dx0, dtype);
        ops::maxpool2d_backward(dx, test::to_device(dout, dtype), argmax.to(test::gpu()));
        EXPECT_TRUE(test::elementwise_close(dx, ref, test::f32_tolerance(dtype, 0)))
            << dtype_name(dtype) << " " << shape_str(shape);
        if (dtype == DType::F32) {
          EXPECT_TRUE(test::same_bits(dx, ref)) << "f32 adds in the CPU's order";
        }
      }
}

TEST(CudaPool, AverageForwardAndBackwardMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(13);
  for (DType dtype : test::cuda_float_dtypes())
    for (const Shape& shape : image_shapes())
      for (const Pool2dParams& p : avg_windows()) {
        Tensor x = test::rounded_randn(shape, gen, dtype);
        const Shape pooled = ops::pool2d_output_shape("test", x, p, false);
        Tensor ref = Tensor::empty(pooled);
        ops::avgpool2d_forward(ref, x, p);
        Tensor out = test::poisoned(pooled, dtype);
        ops::avgpool2d_forward(out, test::to_device(x, dtype), p);
        EXPECT_TRUE(test::elementwise_close(out, ref, test::f32_tolerance(dtype, 0)))
            << "forward " << dtype_name(dtype) << " " << shape_str(shape);

        Tensor dout = test::rounded_randn(pooled, gen, dtype), dx0 = test::rounded_randn(shape, gen, dtype);
        Tensor dref = dx0.clone();
        ops::avgpool2d_backward(dref, dout, p);
        Tensor dx = test::to_device(dx0, dtype);
        ops::avgpool2d_backward(dx, test::to_device(dout, dtype), p);
        EXPECT_TRUE(test::elementwise_close(dx, dref, test::f32_tolerance(dtype, 0)))
            << "backward " << dtype_name(dtype) << " " << shape_str(shape);
      }
}

TEST(CudaPool, AdaptiveAndGlobalAverageMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(14);
  // (P, Q) outputs: overlapping bins (3 of 7, 4 of 9), more bins than inputs along W, global.
  const std::vector<Shape> outputs = {{3, 4}, {2, 11}, {1, 1}};
  for (DType dtype : test::cuda_float_dtypes())
    for (const Shape& pq : outputs) {
      const Shape shape = {2, 7, 9, 13};
      const Shape pooled = {2, pq[0], pq[1], 13};
      Tensor x = test::rounded_randn(shape, gen, dtype);
      Tensor ref = Tensor::empty(pooled);
      ops::adaptive_avgpool2d_forward(ref, x);
      Tensor out = test::poisoned(pooled, dtype);
      ops::adaptive_avgpool2d_forward(out, test::to_device(x, dtype));
      EXPECT_TRUE(test::elementwise_close(out, ref, test::f32_tolerance(dtype, 0))) << dtype_name(dtype);

      Tensor dout = test::rounded_randn(pooled, gen, dtype), dx0 = test::rounded_randn(shape, gen, dtype);
      Tensor dref = dx0.clone();
      ops::adaptive_avgpool2d_backward(dref, dout);
      Tensor dx = test::to_device(dx0, dtype);
      ops::adaptive_avgpool2d_backward(dx, test::to_device(dout, dtype));
      EXPECT_TRUE(test::elementwise_close(dx, dref, test::f32_tolerance(dtype, 0))) << dtype_name(dtype);
    }
}

TEST(CudaPool, RunsAreBitIdentical) {
  TG_REQUIRE_GPU();
  Generator gen(15);
  const Shape shape = {4, 13, 11, 24};
  const Pool2dParams p = window(3, 3, 2, 2, 1, 1);
  for (DType dtype : test::cuda_float_dtypes()) {
    Tensor x = test::to_device(test::rounded_randn(shape, gen, dtype), dtype);
    const Shape pooled = ops::pool2d_output_shape("test", x, p, true);
    Tensor dout = test::to_device(test::rounded_randn(pooled, gen, dtype), dtype);
    Tensor results[2];
    for (Tensor& dx : results) {
      Tensor y = test::poisoned(pooled, dtype), argmax = Tensor::zeros(pooled, DType::I32, test::gpu());
      ops::maxpool2d_forward(y, argmax, x, p);
      dx = Tensor::zeros(shape, dtype, test::gpu());
      ops::maxpool2d_backward(dx, dout, argmax);
      ops::avgpool2d_backward(dx, dout, p);
    }
    EXPECT_TRUE(test::same_bits(results[0], results[1])) << dtype_name(dtype);
  }
}
