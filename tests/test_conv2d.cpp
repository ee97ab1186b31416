// conv2d: forward, input gradient and weight gradient against a naive double-precision direct
// convolution written here, over strides, padding, dilation, groups (depthwise included),
// non-square kernels and images, odd channel counts and sizes that cross the GEMM's register tiles
// and cache blocks; finite-difference gradient checks of tg::conv2d; accumulation into prefilled
// gradients; bad input; and the Conv2d module's parameters and init.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/conv2d.h"
#include "autograd/gradcheck.h"
#include "nn/conv2d.h"
#include "ops/conv2d.h"
#include "ops/cpu/conv2d.h"
#include "ops/cpu/conv2d_winograd.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

struct ConvCase {
  const char* name;
  int64_t N, H, W, C, K, R, S;
  Conv2dParams p;
  bool bias;
};

Conv2dParams params(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups) {
  Conv2dParams p;
  p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw, p.dilation_h = dh, p.dilation_w = dw, p.groups = groups;
  return p;
}

// MR is 14 and NR 32 with AVX-512 (6 / 16 with AVX2, 4 / 16 plain; the suites run at each level),
// the cache blocks MC = 8 MR rows (112 with AVX-512) and KC 768 deep:
// the "tiles" cases have M = N*P*Q, N = K and K = R*S*C/groups that are multiples of none of them
// and cross MC (and KC: 3*3*100 = 900).
const std::vector<ConvCase> kCases = {
    {"3x3 pad1 C3 K5 batch1", 1, 5, 7, 3, 5, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
    {"3x2 stride(2,1) pad(1,0)", 2, 9, 8, 5, 7, 3, 2, params(2, 1, 1, 0, 1, 1, 1), false},
    {"3x3 stride3 pad2 dil2 groups2", 3, 11, 10, 4, 6, 3, 3, params(3, 3, 2, 2, 2, 2, 2), true},
    {"2x3 stride(2,1) groups3", 2, 7, 9, 6, 9, 2, 3, params(2, 1, 1, 1, 1, 1, 3), true},
    {"dilation(1,2) stride(1,2)", 2, 8, 11, 5, 3, 3, 3, params(1, 2, 1, 2, 1, 2, 1), false},
    {"depthwise 3x3 pad1", 2, 7, 6, 6, 6, 3, 3, params(1, 1, 1, 1, 1, 1, 6), true},
    {"depthwise x2 stride2 dil2", 2, 9, 8, 3, 6, 3, 3, params(2, 2, 1, 1, 2, 2, 3), false},
    {"depthwise 5x3 stride(1,2) C7", 1, 10, 9, 7, 7, 5, 3, params(1, 2, 2, 1, 1, 1, 7), true},
    {"1x1 pointwise C17 K33", 2, 5, 3, 17, 33, 1, 1, params(1, 1, 0, 0, 1, 1, 1), true},
    {"1x1 stride2 shortcut", 2, 7, 6, 16, 24, 1, 1, params(2, 2, 0, 0, 1, 1, 1), false},
    {"1x1 pad1 C3", 1, 4, 5, 3, 5, 1, 1, params(1, 1, 1, 1, 1, 1, 1), true},
    // Cg >= 16: the stride-1 input gradient is the flipped forward, here with padding
    // dilation*(R-1) - pad = -1 (a crop).
    {"2x2 pad2 C16 (negative dgrad padding)", 2, 4, 5, 16, 8, 2, 2, params(1, 1, 2, 2, 1, 1, 1), true},
    // Channel runs of whole 16-float vectors: the forward packer transposes straight from x.
    {"3x3 pad1 C32 K16", 2, 6, 5, 32, 16, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
    {"3x3 pad2 dil2 groups2 C64 K32", 1, 7, 6, 64, 32, 3, 3, params(1, 1, 2, 2, 2, 2, 2), false},
    {"2x2 pad2", 2, 3, 4, 5, 3, 2, 2, params(1, 1, 2, 2, 1, 1, 1), true},
    {"kernel covers the image", 2, 2, 3, 3, 4, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
    {"first layer C1 K32", 2, 8, 8, 1, 32, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
    {"tiles C37 K45", 2, 13, 15, 37, 45, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
    {"tiles stride2 C37 K45", 2, 13, 15, 37, 45, 3, 3, params(2, 2, 1, 1, 1, 1, 1), false},
    {"tiles past KC C100 K20", 1, 6, 7, 100, 20, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
};

int64_t out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// Calls term(out_index, x_index, weight_index) for every product of the convolution sum, in NHWC /
// (K, C/groups, R, S) flat indices: the definition, with no cleverness to share with the kernels.
template <class Term>
void for_each_term(const ConvCase& c, Term term) {
  const Conv2dParams& p = c.p;
  const int64_t P = out_size(c.H, c.R, p.stride_h, p.pad_h, p.dilation_h);
  const int64_t Q = out_size(c.W, c.S, p.stride_w, p.pad_w, p.dilation_w);
  const int64_t Cg = c.C / p.groups, Kg = c.K / p.groups;
  for (int64_t n = 0; n < c.N; n++)
    for (int64_t oh = 0; oh < P; oh++)
      for (int64_t ow = 0; ow < Q; ow++)
        for (int64_t k = 0; k < c.K; k++)
          for (int64_t r = 0; r < c.R; r++)
            for (int64_t s = 0; s < c.S; s++) {
              const int64_t h = oh * p.stride_h - p.pad_h + r * p.dilation_h;
              const int64_t w = ow * p.stride_w - p.pad_w + s * p.dilation_w;
              if (h < 0 || h >= c.H || w < 0 || w >= c.W) continue;
              for (int64_t ci = 0; ci < Cg; ci++)
                term(((n * P + oh) * Q + ow) * c.K + k, ((n * c.H + h) * c.W + w) * c.C + k / Kg * Cg + ci,
                     ((k * Cg + ci) * c.R + r) * c.S + s);
            }
}

// A double-precision sum per element, with what bounds its f32 rounding error: the sum of the
// magnitudes of its terms and their number.
struct Sums {
  std::vector<double> value, magnitude;
  std::vector<int64_t> terms;
  explicit Sums(size_t n) : value(n, 0.0), magnitude(n, 0.0), terms(n, 0) {}
  void add(int64_t i, double v) {
    value[i] += v;
    magnitude[i] += std::fabs(v);
    terms[i]++;
  }
};

// Any f32 summation of n terms (products rounded once, fused or not, in any order or blocking) is
// within gamma_n * sum|term| of the exact sum, gamma_n = n u / (1 - n u), u = 2^-24 (Higham,
// "Accuracy and Stability of Numerical Algorithms", 3.1). n counts the products plus the one
// addition onto a prefilled value or a bias. A wrong index or a lost term is off by O(1).
void expect_within_rounding(const Tensor& got, const Sums& want, const std::string& what) {
  const float* g = got.data<float>();
  ASSERT_EQ(static_cast<size_t>(got.numel()), want.value.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < want.value.size(); i++) {
    const double n = static_cast<double>(want.terms[i] + 1), u = std::ldexp(1.0, -24);
    const double bound = n * u / (1.0 - n * u) * want.magnitude[i] + 1e-30;
    if (!(std::fabs(g[i] - want.value[i]) <= bound) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << g[i] << ", want " << want.value[i] << " (bound " << bound
                    << ")";
  }
}

Shape output_shape(const ConvCase& c) {
  return {c.N, out_size(c.H, c.R, c.p.stride_h, c.p.pad_h, c.p.dilation_h),
          out_size(c.W, c.S, c.p.stride_w, c.p.pad_w, c.p.dilation_w), c.K};
}

struct Operands {
  Tensor x, weight, bias, dout;
};

Operands random_operands(const ConvCase& c, Generator& gen) {
  Operands o;
  o.x = Tensor::randn({c.N, c.H, c.W, c.C}, &gen);
  o.weight = Tensor::randn({c.K, c.C / c.p.groups, c.R, c.S}, &gen);
  if (c.bias) o.bias = Tensor::randn({c.K}, &gen);
  o.dout = Tensor::randn(output_shape(c), &gen);
  return o;
}

Tensor leaf(Tensor t) { return t.requires_grad_(true); }

// The implicit-GEMM kernels are checked directly, whatever algorithm the front would choose for the
// shape: the Winograd kernels have their own bound (tests/test_conv2d_winograd.cpp), and the
// front's dispatch is checked bit for bit below.
cpu::Conv2dGeometry geometry_of(const ConvCase& c) {
  cpu::Conv2dGeometry g;
  g.N = c.N, g.H = c.H, g.W = c.W, g.C = c.C, g.K = c.K, g.R = c.R, g.S = c.S;
  Shape out = output_shape(c);
  g.P = out[1], g.Q = out[2];
  g.stride_h = c.p.stride_h, g.stride_w = c.p.stride_w, g.pad_h = c.p.pad_h, g.pad_w = c.p.pad_w;
  g.dilation_h = c.p.dilation_h, g.dilation_w = c.p.dilation_w, g.groups = c.p.groups;
  return g;
}

}  // namespace

// Every test of Conv2dOp runs at each instruction-set level of the CPU kernels.
class Conv2dOp : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Conv2dOp);

// Every test of Conv2dAutograd runs at each instruction-set level of the CPU kernels.
class Conv2dAutograd : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(Conv2dAutograd);

TEST_P(Conv2dOp, OutputSizeIsPyTorchs) {
  EXPECT_EQ(ops::conv2d_output_size(28, 3, 1, 1, 1), 28);
  EXPECT_EQ(ops::conv2d_output_size(28, 3, 2, 1, 1), 14);
  EXPECT_EQ(ops::conv2d_output_size(7, 1, 2, 0, 1), 4);   // floor((7 - 1) / 2) + 1
  EXPECT_EQ(ops::conv2d_output_size(11, 3, 3, 2, 2), 4);  // (11 + 4 - 4 - 1) / 3 + 1
  EXPECT_EQ(ops::conv2d_output_size(3, 3, 1, 0, 1), 1);
}

TEST_P(Conv2dOp, ForwardMatchesReference) {
  Generator gen(101);
  for (const ConvCase& c : kCases) {
    Operands o = random_operands(c, gen);
    Tensor out = Tensor::full(output_shape(c), std::nanf(""));  // every element must be written
    cpu::conv2d_forward(out.data<float>(), o.x.data<float>(), o.weight.data<float>(),
                        c.bias ? o.bias.data<float>() : nullptr, geometry_of(c));
    Sums want(static_cast<size_t>(out.numel()));
    const float *x = o.x.data<float>(), *w = o.weight.data<float>();
    for_each_term(c, [&](int64_t oi, int64_t xi, int64_t wi) { want.add(oi, double(x[xi]) * w[wi]); });
    if (c.bias)
      for (int64_t i = 0; i < out.numel(); i++) want.add(i, o.bias.data<float>()[i % c.K]);
    expect_within_rounding(out, want, std::string("forward ") + c.name);
  }
}

TEST_P(Conv2dOp, BackwardInputAccumulatesReference) {
  Generator gen(102);
  for (const ConvCase& c : kCases) {
    Operands o = random_operands(c, gen);
    Tensor dx = Tensor::randn(o.x.shape(), &gen);  // prefilled: the kernel must add, not write
    Sums want(static_cast<size_t>(dx.numel()));
    for (int64_t i = 0; i < dx.numel(); i++) want.add(i, dx.data<float>()[i]);
    for (int64_t& t : want.terms) t = 0;  // the prefill is the "+1" of the bound
    cpu::conv2d_backward_input(dx.data<float>(), o.dout.data<float>(), o.weight.data<float>(), geometry_of(c));
    const float *dout = o.dout.data<float>(), *w = o.weight.data<float>();
    for_each_term(c, [&](int64_t oi, int64_t xi, int64_t wi) { want.add(xi, double(dout[oi]) * w[wi]); });
    expect_within_rounding(dx, want, std::string("dx ") + c.name);
  }
}

TEST_P(Conv2dOp, BackwardWeightAccumulatesReference) {
  Generator gen(103);
  for (const ConvCase& c : kCases) {
    Operands o = random_operands(c, gen);
    Tensor dweight = Tensor::randn(o.weight.shape(), &gen), dbias = Tensor::randn({c.K}, &gen);
    Sums want_w(static_cast<size_t>(dweight.numel())), want_b(static_cast<size_t>(c.K));
    for (int64_t i = 0; i < dweight.numel(); i++) want_w.add(i, dweight.data<float>()[i]);
    for (int64_t i = 0; i < c.K; i++) want_b.add(i, dbias.data<float>()[i]);
    for (int64_t& t : want_w.terms) t = 0;
    for (int64_t& t : want_b.terms) t = 0;
    ops::conv2d_backward_weight(dweight, dbias, o.dout, o.x, c.p);
    const float *dout = o.dout.data<float>(), *x = o.x.data<float>();
    for_each_term(c, [&](int64_t oi, int64_t xi, int64_t wi) { want_w.add(wi, double(dout[oi]) * x[xi]); });
    for (int64_t i = 0; i < o.dout.numel(); i++) want_b.add(i % c.K, dout[i]);
    expect_within_rounding(dweight, want_w, std::string("dweight ") + c.name);
    expect_within_rounding(dbias, want_b, std::string("dbias ") + c.name);
  }
}

TEST_P(Conv2dOp, BackwardWeightWithoutBiasGradient) {
  Generator gen(104);
  const ConvCase& c = kCases[1];
  Operands o = random_operands(c, gen);
  Tensor dweight = Tensor::zeros(o.weight.shape()), none;
  ops::conv2d_backward_weight(dweight, none, o.dout, o.x, c.p);
  Sums want(static_cast<size_t>(dweight.numel()));
  const float *dout = o.dout.data<float>(), *x = o.x.data<float>();
  for_each_term(c, [&](int64_t oi, int64_t xi, int64_t wi) { want.add(wi, double(dout[oi]) * x[xi]); });
  expect_within_rounding(dweight, want, "dweight without dbias");
}

TEST_P(Conv2dAutograd, GradCheck) {
  Generator gen(105);
  // Small odd shapes: plain with bias, strided + dilated + grouped, depthwise, 1x1 stride 2.
  const std::vector<ConvCase> cases = {
      {"3x3 pad1", 2, 5, 4, 3, 5, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
      {"3x2 stride2 dil(2,1) groups2", 1, 7, 6, 4, 6, 3, 2, params(2, 2, 1, 0, 2, 1, 2), true},
      {"depthwise", 2, 5, 5, 3, 3, 3, 3, params(1, 2, 1, 1, 1, 1, 3), true},
      {"1x1 stride2", 1, 5, 5, 3, 5, 1, 1, params(2, 2, 0, 0, 1, 1, 1), false},
      // 16 channels in and out: Winograd's forward and input gradient under the default rule.
      {"3x3 pad1 C16 K16 (Winograd)", 1, 5, 6, 16, 16, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
  };
  for (const ConvCase& c : cases) {
    Operands o = random_operands(c, gen);
    std::vector<Tensor> inputs = {leaf(o.x), leaf(o.weight)};
    if (c.bias) inputs.push_back(leaf(o.bias));
    const Conv2dParams p = c.p;
    auto fn = [p](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), p); };
    // A convolution is linear in each input on its own, so a central difference is exact at any
    // step; a step of 1 instead of 1e-2 divides the f32 rounding of the two losses by 100, which
    // Winograd's transforms (a larger rounding error than a direct sum) need.
    GradcheckOptions options;
    options.eps = 1.0;
    EXPECT_EQ(gradcheck(fn, inputs, options), "") << c.name;
  }
}

TEST_P(Conv2dAutograd, FrozenWeightStillTrainsTheBias) {
  Generator gen(106);
  const ConvCase& c = kCases[0];
  Operands o = random_operands(c, gen);
  Tensor b = leaf(o.bias);
  Tensor y = conv2d(o.x, o.weight, b, c.p);
  backward(y, o.dout);
  std::vector<float> got(b.grad().data<float>(), b.grad().data<float>() + c.K);
  std::vector<double> want(c.K, 0.0);
  for (int64_t i = 0; i < o.dout.numel(); i++) want[i % c.K] += o.dout.data<float>()[i];
  // K sums of N*P*Q = 35 terms of order 1: far inside 1e-5.
  expect_close(got, want, 1e-5, 1e-5, "dbias");
  EXPECT_FALSE(o.weight.grad().defined());
}

TEST(Conv2dErrors, BadInputNamesConv2dAndTheArgument) {
  Generator gen(107);
  Tensor x = Tensor::randn({2, 5, 5, 4}, &gen), w = Tensor::randn({6, 4, 3, 3}, &gen), b = Tensor::randn({6}, &gen);
  EXPECT_ERROR_MENTIONS(conv2d(Tensor::randn({5, 5, 4}, &gen), w, b), "conv2d", "x", "(5, 5, 4)", "4 dimensions");
  EXPECT_ERROR_MENTIONS(conv2d(x, Tensor::randn({6, 4, 3}, &gen), b), "conv2d", "weight", "(6, 4, 3)");
  EXPECT_ERROR_MENTIONS(conv2d(x, Tensor::randn({6, 3, 3, 3}, &gen), b), "conv2d", "weight", "(6, 3, 3, 3)",
                        "expected (K, 4, R, S)");
  Conv2dParams groups3;
  groups3.groups = 3;
  EXPECT_ERROR_MENTIONS(conv2d(x, w, b, groups3), "conv2d", "groups 3", "4 channels of x");
  Conv2dParams groups4;
  groups4.groups = 4;
  EXPECT_ERROR_MENTIONS(conv2d(x, Tensor::randn({6, 1, 3, 3}, &gen), b, groups4), "conv2d", "groups 4",
                        "6 filters of weight");
  EXPECT_ERROR_MENTIONS(conv2d(x, Tensor::randn({6, 4, 7, 3}, &gen), b), "conv2d", "output size", "below 1");
  EXPECT_ERROR_MENTIONS(conv2d(x, w, Tensor::randn({5}, &gen)), "conv2d", "bias", "(5)", "expected (6)");
  EXPECT_ERROR_MENTIONS(conv2d(x.to(DType::BF16), w, Tensor()), "conv2d", "x", "bf16", "weight", "must match");
  EXPECT_ERROR_MENTIONS(conv2d(x, w.to(DType::F16), b), "conv2d", "weight", "f16");
  Conv2dParams stride0;
  stride0.stride_w = 0;
  EXPECT_ERROR_MENTIONS(conv2d(x, w, b, stride0), "conv2d", "stride_w is 0", ">= 1");
  Conv2dParams pad_negative;
  pad_negative.pad_h = -1;
  EXPECT_ERROR_MENTIONS(conv2d(x, w, b, pad_negative), "conv2d", "pad_h is -1");
  Conv2dParams dilation0;
  dilation0.dilation_h = 0;
  EXPECT_ERROR_MENTIONS(conv2d(x, w, b, dilation0), "conv2d", "dilation_h is 0");
}

TEST(Conv2dErrors, BackwardFrontsCheckTheirGradients) {
  Generator gen(108);
  Tensor x = Tensor::randn({2, 5, 5, 4}, &gen), w = Tensor::randn({6, 4, 3, 3}, &gen);
  Tensor dout = Tensor::randn({2, 3, 3, 6}, &gen), dx = Tensor::zeros({2, 5, 5, 4});
  Tensor dw = Tensor::zeros({6, 4, 3, 3}), db = Tensor::zeros({6}), none;
  EXPECT_ERROR_MENTIONS(ops::conv2d_backward_input(dx, Tensor::randn({2, 3, 4, 6}, &gen), w, {}), "conv2d", "dout",
                        "(2, 3, 4, 6)", "expected (2, 3, 3, 6)");
  EXPECT_ERROR_MENTIONS(ops::conv2d_backward_input(none, dout, w, {}), "conv2d", "dx", "undefined");
  Tensor dw_wrong = Tensor::zeros({6, 4, 3, 2});
  EXPECT_ERROR_MENTIONS(ops::conv2d_backward_weight(dw_wrong, db, dout, x, {}), "conv2d", "dout", "(2, 3, 3, 6)",
                        "expected (2, 3, 4, 6)");
  Tensor db_wrong = Tensor::zeros({5});
  EXPECT_ERROR_MENTIONS(ops::conv2d_backward_weight(dw, db_wrong, dout, x, {}), "conv2d", "dbias", "(5)");
  Tensor out_wrong = Tensor::empty({2, 3, 3, 5});
  EXPECT_ERROR_MENTIONS(ops::conv2d_forward(out_wrong, x, w, Tensor(), {}), "conv2d", "out", "(2, 3, 3, 5)",
                        "expected (2, 3, 3, 6)");
}

TEST(Conv2dModule, ParametersAndInit) {
  Generator gen(109);
  Conv2d conv(6, 8, 3, 2, params(2, 1, 1, 0, 1, 1, 2), true, &gen);
  NamedTensors named = conv.named_parameters();
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "weight");
  EXPECT_EQ(named[0].second.shape(), (Shape{8, 3, 3, 2}));
  EXPECT_EQ(named[1].first, "bias");
  EXPECT_EQ(named[1].second.shape(), (Shape{8}));
  EXPECT_EQ(conv.in_channels(), 6);
  EXPECT_EQ(conv.out_channels(), 8);
  // kaiming_uniform(a = sqrt(5)) and PyTorch's bias rule both give U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
  // fan_in = 6/2 * 3 * 2 = 18. With 144 weights, the extremes come within 10% of the bound (each
  // misses that band with probability 0.9^144 < 1e-6).
  const double bound = 1.0 / std::sqrt(18.0);
  for (const Tensor& t : {conv.weight, conv.bias}) {
    double lo = 0, hi = 0;
    for (int64_t i = 0; i < t.numel(); i++) {
      lo = std::min(lo, double(t.data<float>()[i]));
      hi = std::max(hi, double(t.data<float>()[i]));
    }
    EXPECT_GE(lo, -bound);
    EXPECT_LE(hi, bound);
    if (t.numel() > 100) {
      EXPECT_LT(lo, -0.9 * bound);
      EXPECT_GT(hi, 0.9 * bound);
    }
  }
  Conv2d no_bias(4, 4, 1, 1, {}, false, &gen);
  EXPECT_EQ(no_bias.named_parameters().size(), 1u);
  EXPECT_FALSE(no_bias.bias.defined());
  Generator a(5), b(5);
  EXPECT_EQ(Conv2d(3, 4, 3, 3, {}, true, &a).weight.data<float>()[7], Conv2d(3, 4, 3, 3, {}, true, &b).weight.data<float>()[7]);
  Tensor y = conv.forward(Tensor::randn({2, 7, 5, 6}, &gen));
  EXPECT_EQ(y.shape(), (Shape{2, 4, 4, 8}));
  EXPECT_ERROR_MENTIONS(Conv2d(6, 8, 3, 3, params(1, 1, 0, 0, 1, 1, 4)), "Conv2d", "groups");
}

// The front runs the kernel conv2d_algorithm names: bit-identical to calling that kernel.
TEST_P(Conv2dOp, FrontRunsTheChosenKernel) {
  Generator gen(111);
  for (const ConvCase& c : kCases) {
    Operands o = random_operands(c, gen);
    const cpu::Conv2dGeometry g = geometry_of(c);
    Tensor front = Tensor::empty(output_shape(c)), direct = Tensor::empty(output_shape(c));
    ops::conv2d_forward(front, o.x, o.weight, o.bias, c.p);
    const float* bias = c.bias ? o.bias.data<float>() : nullptr;
    Tensor dx_front = Tensor::zeros(o.x.shape()), dx_direct = Tensor::zeros(o.x.shape());
    ops::conv2d_backward_input(dx_front, o.dout, o.weight, c.p);
    if (ops::conv2d_algorithm(o.x, o.weight, c.p, ops::ConvPass::Forward) == ops::ConvAlgo::Winograd)
      cpu::conv2d_winograd_forward(direct.data<float>(), o.x.data<float>(), o.weight.data<float>(), bias, g.N, g.H,
                                   g.W, g.C, g.K, g.pad_h, g.pad_w);
    else
      cpu::conv2d_forward(direct.data<float>(), o.x.data<float>(), o.weight.data<float>(), bias, g);
    if (ops::conv2d_algorithm(o.x, o.weight, c.p, ops::ConvPass::InputGradient) == ops::ConvAlgo::Winograd)
      cpu::conv2d_winograd_backward_input(dx_direct.data<float>(), o.dout.data<float>(), o.weight.data<float>(), g.N,
                                          g.H, g.W, g.C, g.K, g.pad_h, g.pad_w);
    else
      cpu::conv2d_backward_input(dx_direct.data<float>(), o.dout.data<float>(), o.weight.data<float>(), g);
    EXPECT_EQ(front.to_vector(), direct.to_vector()) << c.name;
    EXPECT_EQ(dx_front.to_vector(), dx_direct.to_vector()) << c.name;
  }
}

TEST_P(Conv2dOp, AutoChoosesWinogradFor3x3Stride1LayersOf16ChannelsOrMore) {
  // TG_CONV_ALGO is read once per process; this checks the default rule (auto).
  const char* env = std::getenv("TG_CONV_ALGO");
  if (env && std::string(env) != "auto") GTEST_SKIP() << "TG_CONV_ALGO=" << env;
  Generator gen(110);
  auto algo = [&](int64_t C, int64_t K, int64_t R, Conv2dParams p) {
    return ops::conv2d_algorithm(Tensor::randn({1, 9, 9, C}, &gen), Tensor::randn({K, C / p.groups, R, R}, &gen), p);
  };
  EXPECT_EQ(algo(32, 64, 3, params(1, 1, 1, 1, 1, 1, 1)), ops::ConvAlgo::Winograd);
  EXPECT_EQ(algo(16, 16, 3, params(1, 1, 0, 0, 1, 1, 1)), ops::ConvAlgo::Winograd);
  EXPECT_EQ(algo(3, 32, 3, params(1, 1, 1, 1, 1, 1, 1)), ops::ConvAlgo::Im2col);   // few channels in
  EXPECT_EQ(algo(32, 8, 3, params(1, 1, 1, 1, 1, 1, 1)), ops::ConvAlgo::Im2col);   // few filters
  EXPECT_EQ(algo(32, 32, 3, params(2, 2, 1, 1, 1, 1, 1)), ops::ConvAlgo::Im2col);  // stride 2
  EXPECT_EQ(algo(32, 32, 3, params(1, 1, 2, 2, 2, 2, 1)), ops::ConvAlgo::Im2col);  // dilation 2
  EXPECT_EQ(algo(32, 32, 3, params(1, 1, 1, 1, 1, 1, 2)), ops::ConvAlgo::Im2col);  // groups
  EXPECT_EQ(algo(32, 32, 1, params(1, 1, 0, 0, 1, 1, 1)), ops::ConvAlgo::Im2col);  // 1x1
  EXPECT_EQ(algo(32, 32, 5, params(1, 1, 2, 2, 1, 1, 1)), ops::ConvAlgo::Im2col);  // 5x5
}
