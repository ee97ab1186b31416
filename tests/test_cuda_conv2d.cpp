// Convolution on CUDA against the CPU's implicit GEMM (ops/cpu/conv2d.h, called directly so the
// reference is never Winograd), in f32 (SIMT kernel) and bf16/f16 (tensor cores), on awkward shapes:
// channels not a multiple of 8, odd H and W, stride 2, padding, dilation, groups (depthwise too), a
// 7x7 first layer of 3 channels, tiles that cross 64 in every GEMM dimension, and a weight gradient
// long enough to be split. Outputs are poisoned with NaN (forward) or pre-filled (the += passes).
//
// Element-wise bounds, u = 2^-24. Both sides see the same values (the CPU's f32 inputs rounded to
// the dtype). Element i sums n products (forward n = R S C/groups, input gradient R S K/groups,
// weight gradient N P Q plus the split count of the partial sums the GPU adds); A_i = the same
// convolution of the absolute values (computed by the CPU kernel) bounds sum |terms|.
//   CPU, f32 with fma or not: within n u A_i of the exact sum.
//   GPU f32 (SIMT fma): within n u A_i. GPU bf16/f16: the products of 8- or 11-bit significands are
//   exact in f32, and the tensor cores' f32 accumulation rounds at worst toward zero (2 u a step
//   instead of u): within 2 n u A_i.
// So |gpu - cpu| <= (2 or 3) n u A_i, plus 2 u |ref| for the epilogue's add (bias or the += of the
// gradient) on each side, then one rounding to the dtype: + R (|ref| + d) + the subnormal spacing.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ops/conv2d.h"
#include "ops/cpu/conv2d.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

const double u = std::ldexp(1.0, -24);

struct ConvCase {
  int64_t N, H, W, C, K, R, S;
  Conv2dParams p;
};

Conv2dParams params(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups) {
  Conv2dParams p;
  p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw, p.dilation_h = dh, p.dilation_w = dw, p.groups = groups;
  return p;
}

std::vector<ConvCase> cases() {
  return {
      {2, 7, 9, 5, 6, 3, 3, params(1, 1, 1, 1, 1, 1, 1)},      // C, K not multiples of 8, odd H, W
      {2, 9, 7, 13, 10, 3, 3, params(2, 2, 1, 1, 1, 1, 1)},    // stride 2
      {1, 11, 10, 12, 9, 3, 2, params(2, 1, 2, 0, 2, 1, 3)},   // dilation, uneven stride/pad, 3 groups
      {2, 6, 7, 8, 8, 3, 3, params(1, 1, 1, 1, 1, 1, 8)},      // depthwise
      {3, 5, 5, 70, 66, 1, 1, params(1, 1, 0, 0, 1, 1, 1)},    // pointwise, N and K past one 64 tile
      {2, 15, 15, 3, 16, 7, 7, params(2, 2, 3, 3, 1, 1, 1)},   // a first layer: 3 channels, 7x7
      {8, 24, 24, 16, 24, 3, 3, params(1, 1, 1, 1, 1, 1, 1)},  // N P Q = 4608: a split weight gradient
  };
}

std::string name(const ConvCase& c, DType dtype) {
  return std::string(dtype_name(dtype)) + " x (" + std::to_string(c.N) + "," + std::to_string(c.H) + "," +
         std::to_string(c.W) + "," + std::to_string(c.C) + ") K " + std::to_string(c.K) + " " + std::to_string(c.R) +
         "x" + std::to_string(c.S) + " stride " + std::to_string(c.p.stride_h) + " groups " + std::to_string(c.p.groups);
}

cpu::Conv2dGeometry geometry(const ConvCase& c) {
  cpu::Conv2dGeometry g;
  g.N = c.N, g.H = c.H, g.W = c.W, g.C = c.C, g.K = c.K, g.R = c.R, g.S = c.S;
  g.P = ops::conv2d_output_size(c.H, c.R, c.p.stride_h, c.p.pad_h, c.p.dilation_h);
  g.Q = ops::conv2d_output_size(c.W, c.S, c.p.stride_w, c.p.pad_w, c.p.dilation_w);
  g.stride_h = c.p.stride_h, g.stride_w = c.p.stride_w, g.pad_h = c.p.pad_h, g.pad_w = c.p.pad_w;
  g.dilation_h = c.p.dilation_h, g.dilation_w = c.p.dilation_w, g.groups = c.p.groups;
  return g;
}

Tensor abs_of(const Tensor& t) {
  Tensor a = t.clone();
  float* p = a.data<float>();
  for (int64_t i = 0; i < a.numel(); i++) p[i] = std::fabs(p[i]);
  return a;
}

// The bound of every element: k (2 for f32, 3 for the tensor cores) n u A_i + 2 u |ref_i|, rounded.
std::vector<double> bounds(DType dtype, int64_t n, const Tensor& sum_abs, const Tensor& ref) {
  const double k = dtype == DType::F32 ? 2.0 : 3.0;
  const double R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  const std::vector<float> a = sum_abs.to_vector(), r = ref.to_vector();
  std::vector<double> b(r.size());
  for (size_t i = 0; i < r.size(); i++) {
    const double d = k * static_cast<double>(n) * u * a[i] + 2 * u * std::fabs(r[i]);
    b[i] = d + R * (std::fabs(r[i]) + d) + test::subnormal_half_spacing(dtype);
  }
  return b;
}

struct Operands {
  Tensor x, weight, bias, dout;
};
Operands operands(const ConvCase& c, const cpu::Conv2dGeometry& g, Generator& gen, DType dtype) {
  return {test::rounded_randn({c.N, c.H, c.W, c.C}, gen, dtype),
          test::rounded_randn({c.K, c.C / c.p.groups, c.R, c.S}, gen, dtype),
          test::rounded_randn({c.K}, gen, dtype), test::rounded_randn({c.N, g.P, g.Q, c.K}, gen, dtype)};
}

}  // namespace

TEST(CudaConv2d, ForwardMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(31);
  for (DType dtype : test::cuda_float_dtypes())
    for (const ConvCase& c : cases())
      for (bool with_bias : {true, false}) {
        const cpu::Conv2dGeometry g = geometry(c);
        Operands o = operands(c, g, gen, dtype);
        const Shape out_shape = {c.N, g.P, g.Q, c.K};
        Tensor ref = Tensor::empty(out_shape), sum_abs = Tensor::empty(out_shape);
        Tensor abs_bias = abs_of(o.bias);
        cpu::conv2d_forward(ref.data<float>(), o.x.data<float>(), o.weight.data<float>(),
                            with_bias ? o.bias.data<float>() : nullptr, g);
        cpu::conv2d_forward(sum_abs.data<float>(), abs_of(o.x).data<float>(), abs_of(o.weight).data<float>(),
                            with_bias ? abs_bias.data<float>() : nullptr, g);
        Tensor out = test::poisoned(out_shape, dtype);
        Tensor bias = with_bias ? test::to_device(o.bias, dtype) : Tensor();
        ops::conv2d_forward(out, test::to_device(o.x, dtype), test::to_device(o.weight, dtype), bias, c.p);
        EXPECT_TRUE(test::elementwise_close(out, ref, bounds(dtype, g.patch_size(), sum_abs, ref)))
            << name(c, dtype) << (with_bias ? " bias" : "");
      }
}

TEST(CudaConv2d, InputGradientMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(32);
  for (DType dtype : test::cuda_float_dtypes())
    for (const ConvCase& c : cases()) {
      const cpu::Conv2dGeometry g = geometry(c);
      Operands o = operands(c, g, gen, dtype);
      const Shape in_shape = {c.N, c.H, c.W, c.C};
      Tensor dx0 = test::rounded_randn(in_shape, gen, dtype);
      Tensor ref = dx0.clone(), sum_abs = abs_of(dx0);
      cpu::conv2d_backward_input(ref.data<float>(), o.dout.data<float>(), o.weight.data<float>(), g);
      cpu::conv2d_backward_input(sum_abs.data<float>(), abs_of(o.dout).data<float>(), abs_of(o.weight).data<float>(), g);
      Tensor dx = test::to_device(dx0, dtype);
      ops::conv2d_backward_input(dx, test::to_device(o.dout, dtype), test::to_device(o.weight, dtype), c.p);
      const int64_t n = c.R * c.S * (c.K / c.p.groups);
      EXPECT_TRUE(test::elementwise_close(dx, ref, bounds(dtype, n, sum_abs, ref))) << name(c, dtype);
    }
}

TEST(CudaConv2d, WeightGradientMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(33);
  for (DType dtype : test::cuda_float_dtypes())
    for (const ConvCase& c : cases()) {
      const cpu::Conv2dGeometry g = geometry(c);
      Operands o = operands(c, g, gen, dtype);
      Tensor dw0 = test::rounded_randn(o.weight.shape(), gen, dtype), db0 = test::rounded_randn({c.K}, gen, dtype);
      Tensor dw_ref = dw0.clone(), db_ref = db0.clone(), dw_abs = abs_of(dw0), db_abs = abs_of(db0);
      cpu::conv2d_backward_weight(dw_ref.data<float>(), db_ref.data<float>(), o.dout.data<float>(), o.x.data<float>(), g);
      cpu::conv2d_backward_weight(dw_abs.data<float>(), db_abs.data<float>(), abs_of(o.dout).data<float>(),
                                  abs_of(o.x).data<float>(), g);
      Tensor dw = test::to_device(dw0, dtype), db = test::to_device(db0, dtype);
      ops::conv2d_backward_weight(dw, db, test::to_device(o.dout, dtype), test::to_device(o.x, dtype), c.p);
      // The GPU also adds its slices' (at most 64) or chunks' (at most 1024) partial sums.
      const int64_t rows = g.output_pixels();
      EXPECT_TRUE(test::elementwise_close(dw, dw_ref, bounds(dtype, rows + 64, dw_abs, dw_ref))) << name(c, dtype);
      // dbias sums in f32 on both sides whatever the dtype: f32's bound, then the rounding.
      std::vector<double> b_db = bounds(DType::F32, rows + 1024, db_abs, db_ref);
      const double R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
      const std::vector<float> dbr = db_ref.to_vector();
      for (size_t i = 0; i < b_db.size(); i++) b_db[i] += R * (std::fabs(dbr[i]) + b_db[i]) + test::subnormal_half_spacing(dtype);
      EXPECT_TRUE(test::elementwise_close(db, db_ref, b_db)) << "dbias " << name(c, dtype);
    }
}

TEST(CudaConv2d, RunsAreBitIdentical) {
  TG_REQUIRE_GPU();
  Generator gen(34);
  const ConvCase c = cases().back();  // the split weight gradient
  const cpu::Conv2dGeometry g = geometry(c);
  for (DType dtype : test::cuda_float_dtypes()) {
    Operands o = operands(c, g, gen, dtype);
    Tensor x = test::to_device(o.x, dtype), w = test::to_device(o.weight, dtype), dout = test::to_device(o.dout, dtype);
    Tensor outs[2], dxs[2], dws[2], dbs[2];
    for (int run = 0; run < 2; run++) {
      outs[run] = test::poisoned({c.N, g.P, g.Q, c.K}, dtype);
      ops::conv2d_forward(outs[run], x, w, test::to_device(o.bias, dtype), c.p);
      dxs[run] = Tensor::zeros({c.N, c.H, c.W, c.C}, dtype, test::gpu());
      ops::conv2d_backward_input(dxs[run], dout, w, c.p);
      dws[run] = Tensor::zeros(o.weight.shape(), dtype, test::gpu());
      dbs[run] = Tensor::zeros({c.K}, dtype, test::gpu());
      ops::conv2d_backward_weight(dws[run], dbs[run], dout, x, c.p);
    }
    EXPECT_TRUE(test::same_bits(outs[0], outs[1])) << dtype_name(dtype);
    EXPECT_TRUE(test::same_bits(dxs[0], dxs[1])) << dtype_name(dtype);
    EXPECT_TRUE(test::same_bits(dws[0], dws[1])) << dtype_name(dtype);
    EXPECT_TRUE(test::same_bits(dbs[0], dbs[1])) << dtype_name(dtype);
  }
}
