// Pooling over NHWC and flatten: max, average and adaptive average pooling against naive double
// references written here from PyTorch's definitions (output sizes with ceil_mode, padding,
// dilation, count_include_pad, overlapping adaptive bins, the first maximum on a tie),
// finite-difference gradient checks on odd sizes, flatten's PyTorch order, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/pool.h"
#include "autograd/gradcheck.h"
#include "nn/flatten.h"
#include "nn/pool.h"
#include "ops/pool.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

Tensor leaf(Tensor t) { return t.requires_grad_(true); }

Pool2dParams params(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool ceil_mode = false) {
  Pool2dParams p;
  p.kernel_h = kh, p.kernel_w = kw, p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw;
  p.ceil_mode = ceil_mode;
  return p;
}

// torch.nn.functional's output size, written from its documentation:
// floor-or-ceil((in + 2 pad - dilation (kernel - 1) - 1) / stride) + 1, and in ceil mode the last
// window must start inside the input or its left padding.
int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t d, bool ceil_mode) {
  double span = static_cast<double>(in + 2 * pad - d * (k - 1) - 1) / static_cast<double>(s);
  int64_t out = static_cast<int64_t>(ceil_mode ? std::ceil(span) : std::floor(span)) + 1;
  if (ceil_mode && (out - 1) * s >= in + pad) out--;
  return out;
}

struct Image {
  std::vector<float> v;
  int64_t N, H, W, C;
  float at(int64_t n, int64_t h, int64_t w, int64_t c) const { return v[((n * H + h) * W + w) * C + c]; }
};

// Max over the dilated taps inside the input; the first (row-major) maximum's index h*W + w.
void reference_max(const Image& x, const Pool2dParams& p, std::vector<double>& out, std::vector<int32_t>& where) {
  const int64_t P = out_size(x.H, p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode);
  const int64_t Q = out_size(x.W, p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode);
  out.assign(x.N * P * Q * x.C, 0.0);
  where.assign(out.size(), -1);
  for (int64_t n = 0; n < x.N; n++)
    for (int64_t i = 0; i < P; i++)
      for (int64_t j = 0; j < Q; j++)
        for (int64_t c = 0; c < x.C; c++) {
          double best = -INFINITY;
          int32_t best_at = -1;
          for (int64_t a = 0; a < p.kernel_h; a++)
            for (int64_t b = 0; b < p.kernel_w; b++) {
              int64_t h = i * p.stride_h - p.pad_h + a * p.dilation_h, w = j * p.stride_w - p.pad_w + b * p.dilation_w;
              if (h < 0 || h >= x.H || w < 0 || w >= x.W) continue;
              if (best_at < 0 || x.at(n, h, w, c) > best) best = x.at(n, h, w, c), best_at = static_cast<int32_t>(h * x.W + w);
            }
          out[((n * P + i) * Q + j) * x.C + c] = best;
          where[((n * P + i) * Q + j) * x.C + c] = best_at;
        }
}

// PyTorch's avg_pool2d: window [i s - pad, i s - pad + k) cut at in + pad; the divisor is that
// window's area with count_include_pad, else the number of taps inside the input.
std::vector<double> reference_avg(const Image& x, const Pool2dParams& p) {
  const int64_t P = out_size(x.H, p.kernel_h, p.stride_h, p.pad_h, 1, p.ceil_mode);
  const int64_t Q = out_size(x.W, p.kernel_w, p.stride_w, p.pad_w, 1, p.ceil_mode);
  std::vector<double> out(x.N * P * Q * x.C);
  for (int64_t n = 0; n < x.N; n++)
    for (int64_t i = 0; i < P; i++)
      for (int64_t j = 0; j < Q; j++)
        for (int64_t c = 0; c < x.C; c++) {
          int64_t h0 = i * p.stride_h - p.pad_h, w0 = j * p.stride_w - p.pad_w;
          int64_t h1 = std::min(h0 + p.kernel_h, x.H + p.pad_h), w1 = std::min(w0 + p.kernel_w, x.W + p.pad_w);
          double sum = 0;
          int64_t inside = 0;
          for (int64_t h = h0; h < h1; h++)
            for (int64_t w = w0; w < w1; w++)
              if (h >= 0 && h < x.H && w >= 0 && w < x.W) sum += x.at(n, h, w, c), inside++;
          double divisor = p.count_include_pad ? static_cast<double>((h1 - h0) * (w1 - w0)) : static_cast<double>(inside);
          out[((n * P + i) * Q + j) * x.C + c] = sum / divisor;
        }
  return out;
}

// AdaptiveAvgPool2d: output i averages [floor(i in / out), ceil((i + 1) in / out)), in double.
std::vector<double> reference_adaptive(const Image& x, int64_t P, int64_t Q) {
  std::vector<double> out(x.N * P * Q * x.C);
  for (int64_t n = 0; n < x.N; n++)
    for (int64_t i = 0; i < P; i++)
      for (int64_t j = 0; j < Q; j++)
        for (int64_t c = 0; c < x.C; c++) {
          int64_t h0 = static_cast<int64_t>(std::floor(static_cast<double>(i * x.H) / P));
          int64_t h1 = static_cast<int64_t>(std::ceil(static_cast<double>((i + 1) * x.H) / P));
          int64_t w0 = static_cast<int64_t>(std::floor(static_cast<double>(j * x.W) / Q));
          int64_t w1 = static_cast<int64_t>(std::ceil(static_cast<double>((j + 1) * x.W) / Q));
          double sum = 0;
          for (int64_t h = h0; h < h1; h++)
            for (int64_t w = w0; w < w1; w++) sum += x.at(n, h, w, c);
          out[((n * P + i) * Q + j) * x.C + c] = sum / static_cast<double>((h1 - h0) * (w1 - w0));
        }
  return out;
}

Image image_of(const Tensor& t) { return {t.to_vector(), t.size(0), t.size(1), t.size(2), t.size(3)}; }

// Distinct values 0.1 apart in a random order: no two taps of a window are within the
// finite-difference step, so the maximum never changes hands during a gradient check.
Tensor distinct(const Shape& shape, Generator& gen) {
  std::vector<int64_t> order(shape_numel(shape));
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = order.size(); i > 1; i--) std::swap(order[i - 1], order[gen.below(i)]);
  std::vector<float> v(order.size());
  for (size_t i = 0; i < v.size(); i++) v[i] = 0.1f * static_cast<float>(order[i]) - 0.05f * static_cast<float>(v.size());
  return Tensor::from_vector(v, shape);
}

// The configurations every pooling test runs: stride != kernel, padding, ceil mode on sizes where
// it adds a window (and one where it then drops it), rectangular windows.
std::vector<Pool2dParams> configurations() {
  return {params(2, 2, 2, 2, 0, 0), params(3, 3, 2, 2, 1, 1), params(3, 3, 2, 2, 1, 1, true), params(3, 2, 1, 2, 0, 1),
          params(2, 3, 3, 2, 1, 1, true), params(1, 1, 2, 2, 0, 0)};
}

}  // namespace

// Every test of PoolOp runs at each instruction-set level of the CPU kernels.
class PoolOp : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(PoolOp);

// Exact: a max copies a value; an average of <= 9 f32 values of order 1 rounds at ~1e-7 (1e-6 is 10x).
TEST_P(PoolOp, MaxMatchesReferenceWithDilation) {
  Generator gen(31);
  for (const Shape& shape : std::vector<Shape>{{2, 7, 9, 5}, {1, 6, 5, 17}}) {
    Tensor x = Tensor::randn(shape, &gen);
    std::vector<Pool2dParams> all = configurations();
    Pool2dParams dilated = params(3, 2, 2, 1, 1, 1, true);
    dilated.dilation_h = 2, dilated.dilation_w = 3;
    all.push_back(dilated);
    for (const Pool2dParams& p : all) {
      std::vector<double> want;
      std::vector<int32_t> where;
      reference_max(image_of(x), p, want, where);
      const Shape pooled = ops::pool2d_output_shape("test", x, p, true);
      Tensor y = Tensor::empty(pooled), argmax = Tensor::empty(pooled, DType::I32);
      ops::maxpool2d_forward(y, argmax, x, p);
      std::string what = "x " + shape_str(shape) + " kernel " + std::to_string(p.kernel_h) + "x" +
                         std::to_string(p.kernel_w) + " stride " + std::to_string(p.stride_h) + " ceil " +
                         std::to_string(p.ceil_mode) + " dilation " + std::to_string(p.dilation_h);
      expect_close(y.to_vector(), want, 0, 0, what);
      EXPECT_EQ(argmax.to_int_vector(), where) << what;
      EXPECT_EQ(max_pool2d(x, p).to_vector(), y.to_vector()) << what;
    }
  }
}

// Output sizes PyTorch documents for ceil_mode: 6 -> 3 (an extra, partial window) where floor gives
// 2, and 5 with kernel 2, stride 2, padding 1 -> 3 in both modes (ceil's extra window would start in
// the right padding, so it is dropped).
TEST_P(PoolOp, CeilModeOutputSizes) {
  Tensor x6 = Tensor::zeros({1, 6, 6, 1}), x5 = Tensor::zeros({1, 5, 5, 1});
  EXPECT_EQ(max_pool2d(x6, params(3, 3, 2, 2, 0, 0)).shape(), (Shape{1, 2, 2, 1}));
  EXPECT_EQ(max_pool2d(x6, params(3, 3, 2, 2, 0, 0, true)).shape(), (Shape{1, 3, 3, 1}));
  EXPECT_EQ(avg_pool2d(x5, params(2, 2, 2, 2, 1, 1)).shape(), (Shape{1, 3, 3, 1}));
  EXPECT_EQ(avg_pool2d(x5, params(2, 2, 2, 2, 1, 1, true)).shape(), (Shape{1, 3, 3, 1}));
}

// A window of equal values: the first tap in row-major order takes the index (and the gradient).
TEST_P(PoolOp, MaxTieGoesToTheFirstTap) {
  std::vector<float> v = {1, 3, 3,
                          3, 0, 3,
                          2, 3, 3};
  Tensor x = leaf(Tensor::from_vector(v, {1, 3, 3, 1}));
  Pool2dParams p = params(2, 2, 1, 1, 0, 0);
  Tensor y = Tensor::empty({1, 2, 2, 1}), argmax = Tensor::empty({1, 2, 2, 1}, DType::I32);
  ops::maxpool2d_forward(y, argmax, x, p);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{3, 3, 3, 3}));
  EXPECT_EQ(argmax.to_int_vector(), (std::vector<int32_t>{1, 1, 3, 5}));
  backward(max_pool2d(x, p), Tensor::from_vector({1, 10, 100, 1000}, {1, 2, 2, 1}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{0, 11, 0, 100, 0, 1000, 0, 0, 0}));
}

TEST_P(PoolOp, AvgMatchesReferenceBothCountModes) {
  Generator gen(32);
  for (const Shape& shape : std::vector<Shape>{{2, 7, 9, 5}, {1, 6, 5, 17}}) {
    Tensor x = Tensor::randn(shape, &gen);
    for (Pool2dParams p : configurations()) {
      for (bool include : {true, false}) {
        p.count_include_pad = include;
        std::string what = "x " + shape_str(shape) + " kernel " + std::to_string(p.kernel_h) + "x" +
                           std::to_string(p.kernel_w) + " pad " + std::to_string(p.pad_h) + " ceil " +
                           std::to_string(p.ceil_mode) + " count_include_pad " + std::to_string(include);
        expect_close(avg_pool2d(x, p).to_vector(), reference_avg(image_of(x), p), 1e-6, 1e-6, what);
      }
    }
  }
  // The two modes differ at a padded corner: kernel 3, padding 1 on ones gives 4/9 or 1.
  Tensor ones = Tensor::ones({1, 4, 4, 1});
  Pool2dParams p = params(3, 3, 2, 2, 1, 1);
  EXPECT_NEAR(avg_pool2d(ones, p).to_vector()[0], 4.0f / 9.0f, 1e-7);
  p.count_include_pad = false;
  EXPECT_NEAR(avg_pool2d(ones, p).to_vector()[0], 1.0f, 1e-7);
}

// Overlapping bins (7 -> 3: [0,3) [2,5) [4,7); 5 -> 3: [0,2) [1,4) [3,5)), growing bins (3 -> 5), and
// the global case, which is the plain mean over H*W (sums of 1000 terms: 1e-5).
TEST_P(PoolOp, AdaptiveAvgMatchesReference) {
  Generator gen(33);
  Tensor x = Tensor::randn({2, 7, 5, 19}, &gen);
  for (auto [P, Q] : std::vector<std::pair<int64_t, int64_t>>{{3, 3}, {1, 1}, {7, 5}, {2, 4}, {9, 6}})
    expect_close(adaptive_avg_pool2d(x, P, Q).to_vector(), reference_adaptive(image_of(x), P, Q), 1e-6, 1e-6,
                 "out " + std::to_string(P) + "x" + std::to_string(Q));
  Tensor big = Tensor::randn({3, 25, 40, 32}, &gen);
  expect_close(AdaptiveAvgPool2d(1, 1).forward(big).to_vector(), reference_adaptive(image_of(big), 1, 1), 1e-5, 1e-5,
               "global");
  EXPECT_EQ(AdaptiveAvgPool2d(1, 1).forward(big).shape(), (Shape{3, 1, 1, 32}));
}

TEST_P(PoolOp, GradCheckMax) {
  Generator gen(34);
  Pool2dParams dilated = params(2, 3, 2, 1, 1, 1, true);
  dilated.dilation_h = 2, dilated.dilation_w = 2;
  for (const Pool2dParams& p : {params(3, 3, 2, 2, 1, 1, true), params(3, 2, 1, 2, 0, 1), dilated}) {
    Tensor x = leaf(distinct({2, 7, 6, 3}, gen));
    EXPECT_EQ(gradcheck([p](const std::vector<Tensor>& in) { return max_pool2d(in[0], p); }, {x}), "")
        << "kernel " << p.kernel_h << "x" << p.kernel_w << " dilation " << p.dilation_h;
  }
}

TEST_P(PoolOp, GradCheckAvgAndAdaptive) {
  Generator gen(35);
  Tensor x = leaf(Tensor::randn({2, 7, 5, 3}, &gen));
  for (Pool2dParams p : {params(3, 3, 2, 2, 1, 1, true), params(2, 3, 3, 2, 1, 1, true), params(3, 2, 1, 2, 0, 1)}) {
    for (bool include : {true, false}) {
      p.count_include_pad = include;
      EXPECT_EQ(gradcheck([p](const std::vector<Tensor>& in) { return avg_pool2d(in[0], p); }, {x}), "")
          << "kernel " << p.kernel_h << "x" << p.kernel_w << " count_include_pad " << include;
    }
  }
  for (auto [P, Q] : std::vector<std::pair<int64_t, int64_t>>{{3, 3}, {1, 1}, {4, 2}})
    EXPECT_EQ(gradcheck([P = P, Q = Q](const std::vector<Tensor>& in) { return adaptive_avg_pool2d(in[0], P, Q); }, {x}),
              "")
        << P << "x" << Q;
}

// (N,H,W,C) -> (N, C*H*W) with element (c, h, w) at c*H*W + h*W + w, as PyTorch's flatten of NCHW.
TEST_P(PoolOp, FlattenUsesPyTorchOrder) {
  Generator gen(36);
  const int64_t N = 2, H = 3, W = 5, C = 4;
  Tensor x = leaf(Tensor::randn({N, H, W, C}, &gen));
  Tensor y = Flatten().forward(x);
  ASSERT_EQ(y.shape(), (Shape{N, C * H * W}));
  std::vector<float> xs = x.to_vector(), ys = y.to_vector();
  std::vector<double> want(N * C * H * W);
  for (int64_t n = 0; n < N; n++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t w = 0; w < W; w++)
        for (int64_t c = 0; c < C; c++) want[n * C * H * W + c * H * W + h * W + w] = xs[((n * H + h) * W + w) * C + c];
  expect_close(ys, want, 0, 0, "flatten");
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return flatten_nhwc(in[0]); }, {x}), "");
  // 1x1 maps: a reshape of the same storage.
  Tensor pooled = leaf(Tensor::randn({N, 1, 1, C}, &gen));
  Tensor flat = flatten_nhwc(pooled);
  EXPECT_EQ(flat.shape(), (Shape{N, C}));
  EXPECT_EQ(flat.storage(), pooled.storage());
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& in) { return flatten_nhwc(in[0]); }, {pooled}), "");
}

TEST_P(PoolOp, ModulesMatchTheFunctions) {
  Generator gen(37);
  Tensor x = Tensor::randn({2, 6, 7, 3}, &gen);
  Pool2dParams p = params(3, 3, 2, 2, 1, 1, true);
  EXPECT_EQ(MaxPool2d(p).forward(x).to_vector(), max_pool2d(x, p).to_vector());
  EXPECT_EQ(AvgPool2d(p).forward(x).to_vector(), avg_pool2d(x, p).to_vector());
  EXPECT_EQ(AdaptiveAvgPool2d(2, 3).forward(x).to_vector(), adaptive_avg_pool2d(x, 2, 3).to_vector());
}

TEST_P(PoolOp, BadInputNamesTheOpAndArgument) {
  Generator gen(31);
  Tensor x = Tensor::randn({1, 5, 5, 2}, &gen);
  expect_error([&] { max_pool2d(Tensor::randn({5, 5, 2}, &gen), params(2, 2, 2, 2, 0, 0)); }, {"max_pool2d", "x", "(5, 5, 2)", "NHWC"});
  expect_error([&] { max_pool2d(x, params(2, 2, 2, 2, 2, 0)); }, {"max_pool2d", "padding", "(2, 0)", "half"});
  expect_error([&] { max_pool2d(x, params(0, 2, 2, 2, 0, 0)); }, {"max_pool2d", "kernel_h", "0"});
  expect_error([&] { avg_pool2d(x, params(2, 2, 0, 2, 0, 0)); }, {"avg_pool2d", "stride_h", "0"});
  expect_error([&] { max_pool2d(x, params(7, 2, 1, 1, 0, 0)); }, {"max_pool2d", "height", "-1", "kernel 7"});
  Pool2dParams dilated = params(2, 2, 2, 2, 0, 0);
  dilated.dilation_w = 2;
  expect_error([&] { avg_pool2d(x, dilated); }, {"avg_pool2d", "dilation", "(1, 2)"});
  expect_error([&] { adaptive_avg_pool2d(x, 0, 2); }, {"adaptive_avg_pool2d", "(0, 2)"});
  expect_error([&] { avg_pool2d(Tensor::from_ints({1, 2, 3, 4}, {1, 2, 2, 1}), params(2, 2, 1, 1, 0, 0)); },
               {"avg_pool2d", "x", "i32", "f32"});
  expect_error([&] { flatten_nhwc(Tensor::randn({2, 3}, &gen)); }, {"flatten_nhwc", "(2, 3)"});
  expect_error([&] { AdaptiveAvgPool2d(1, 0); }, {"AdaptiveAvgPool2d", "(1, 0)"});
}

// NaN propagates through a max (the window's last NaN, as PyTorch), and a window of -inf points at
// its first tap inside the input, never at the padding.
TEST_P(PoolOp, MaxPropagatesNanAndHandlesMinusInfinity) {
  const float nan = std::nanf(""), inf = INFINITY;
  Tensor x = Tensor::from_vector({1, nan, 2, 5,
                                  nan, 0, -inf, -inf}, {1, 2, 4, 1});
  Tensor y = Tensor::empty({1, 1, 2, 1}), argmax = Tensor::empty({1, 1, 2, 1}, DType::I32);
  ops::maxpool2d_forward(y, argmax, x, params(2, 2, 2, 2, 0, 0));
  EXPECT_TRUE(std::isnan(y.to_vector()[0]));
  EXPECT_EQ(y.to_vector()[1], 5.0f);
  EXPECT_EQ(argmax.to_int_vector(), (std::vector<int32_t>{4, 3}));
  Tensor minus_inf = Tensor::full({1, 2, 2, 1}, -inf);
  Tensor yp = Tensor::empty({1, 3, 3, 1}), ap = Tensor::empty({1, 3, 3, 1}, DType::I32);
  ops::maxpool2d_forward(yp, ap, minus_inf, params(2, 2, 1, 1, 1, 1));
  EXPECT_EQ(ap.to_int_vector(), (std::vector<int32_t>{0, 0, 1, 0, 0, 1, 2, 2, 3}));
}
