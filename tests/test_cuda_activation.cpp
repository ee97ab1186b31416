// CUDA activations (GELU, ReLU, tanh; forward and backward) and dropout against the CPU kernels on
// the same rounded inputs, in f32, bf16 and f16, with poisoned outputs; dropout's mask identical to
// the CPU's for the same key. Plus the CPU-side contract: half precision on the CPU is a clear error.
//
// Every comparison is element-wise (test::elementwise_close): one rounding into a format with p
// significand bits moves a value by at most u = 2^-p of itself (f32 24, bf16 8, f16 11), and the
// two devices' f32 arithmetic may differ by the amounts derived at each check. The norm-wise
// rel_error checks stay beside them as the tighter statement about the average element.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/functions/activation.h"
#include "autograd/functions/dropout.h"
#include "ops/activation.h"
#include "ops/cpu/dropout.h"
#include "ops/dropout.h"
#include "tensor/tensor.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

double roundoff(DType dtype) { return test::unit_roundoff(dtype); }

const std::vector<int64_t>& sizes() {
  static const std::vector<int64_t> n = {1, 7, 1000, 100003};
  return n;
}

struct ActivationCase {
  const char* name;
  void (*forward)(Tensor&, const Tensor&);
  void (*backward)(Tensor&, const Tensor&, const Tensor&);
  bool backward_takes_output;  // relu and tanh are differentiated from their output, gelu from its input
  // The f32 difference between the devices, relative: GELU and tanh use CUDA's expf/tanhf (<= 2 ulp)
  // on the GPU and the CPU's vectorized exp/tanh (~2 ulp), through a few more f32 operations: within
  // 8 ulp (5e-7) forward; gelu' chains about ten operations after the exp: 32 ulp (2e-6). ReLU is
  // exact both ways. tanh' = 1 - out^2: whether a compiler fuses it into an FMA moves each element
  // by up to an ulp of |dout| (out^2's rounding), which in norm is an ulp of the result, plus the
  // rounding of the add: 8 ulp (5e-7) leaves room for both.
  double f32_forward, f32_backward;
};

const std::vector<ActivationCase>& activations() {
  static const std::vector<ActivationCase> cases = {
      {"gelu", ops::gelu_forward, ops::gelu_backward, false, 5e-7, 2e-6},
      {"relu", ops::relu_forward, ops::relu_backward, true, 0.0, 0.0},
      {"tanh", ops::tanh_forward, ops::tanh_backward, true, 5e-7, 5e-7},
  };
  return cases;
}

// Per-element bounds of the GPU's result against the CPU's (both f32 on identical inputs, the GPU
// then rounded once to `dtype`: bound = d + R (|ref| + d) + the subnormal half-spacing, d the f32
// difference). u = 2^-24.
//
// Forward, d / |ref|: ReLU 0 (a select). tanh: tanhf and the CPU's tanh each within 2-4 ulp, 8 u.
// GELU, y = x / (1 + e), e = exp(arg), arg = -2 sqrt(2/pi) (x + 0.044715 x^3): arg's terms share
// x's sign, so each side forms it within 4 u of itself (contracted into FMAs or not), and the
// sides' args differ by 8 u |arg|; exp turns that into a relative 8 u |arg| of e, plus each
// side's exp error (2 ulp each: 4 u); through 1 + e the relative change is at most the same
// scaled by e / (1 + e), and the add and the division add 2 u per side: d = (8 + 8 |arg|) u |y|
// with |arg| <= 80 (past that both sides return the settled value).
//
// Backward, dinp = dinp0 + dout g: d = |dout| dg + 2 u (|dinp0| + |dout g|) (the final add, which
// one side may fuse with the multiply). gelu' = s (1 + 2 x u' e s), s = 1 / (1 + e): it crosses
// zero near x = -0.75, so its difference is bounded by the size of its terms,
// G = s (1 + |2 x u' e s|): dg = (16 + 8 |arg|) u G (about ten operations after the exp, as
// above). tanh' = 1 - y^2 from the same saved y: dg = u y^2 (the square's rounding, fused or
// not) + u |1 - y^2|. relu' is a select: dg = 0.
std::vector<double> forward_bounds(const char* name, DType dtype, const Tensor& x, const Tensor& ref) {
  const double u = std::ldexp(1.0, -24), R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  const std::vector<float> xs = x.to_vector(), ys = ref.to_vector();
  std::vector<double> b(xs.size());
  for (size_t i = 0; i < xs.size(); i++) {
    double rel = 0;
    if (std::string(name) == "tanh") rel = 8 * u;
    if (std::string(name) == "gelu") {
      const double arg = std::fabs(-2 * 0.7978845608028654 * (xs[i] + 0.044715 * xs[i] * xs[i] * xs[i]));
      rel = (8 + 8 * std::min(arg, 80.0)) * u;
    }
    const double d = rel * std::fabs(ys[i]);
    b[i] = d + R * (std::fabs(ys[i]) + d) + test::subnormal_half_spacing(dtype);
  }
  return b;
}

std::vector<double> backward_bounds(const char* name, DType dtype, const Tensor& saved, const Tensor& dout,
                                    const Tensor& dinp0, const Tensor& ref) {
  const double u = std::ldexp(1.0, -24), R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  const std::vector<float> v = saved.to_vector(), g = dout.to_vector(), d0 = dinp0.to_vector(), r = ref.to_vector();
  std::vector<double> b(v.size());
  for (size_t i = 0; i < v.size(); i++) {
    double grad = 0, dgrad = 0;
    if (std::string(name) == "relu") grad = v[i] > 0 ? 1 : 0;
    if (std::string(name) == "tanh") {
      grad = 1.0 - static_cast<double>(v[i]) * v[i];
      dgrad = u * static_cast<double>(v[i]) * v[i] + u * std::fabs(grad);
    }
    if (std::string(name) == "gelu") {
      const double x = v[i], a = -2 * 0.7978845608028654 * (x + 0.044715 * x * x * x);
      const double e = std::exp(std::min(std::max(a, -80.0), 80.0)), s = 1 / (1 + e);
      const double du = 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
      grad = s * (1 + 2 * x * du * e * s);
      dgrad = (16 + 8 * std::min(std::fabs(a), 80.0)) * u * s * (1 + std::fabs(2 * x * du * e * s));
    }
    const double d = std::fabs(g[i]) * dgrad + 2 * u * (std::fabs(d0[i]) + std::fabs(g[i] * grad));
    b[i] = d + R * (std::fabs(r[i]) + d) + test::subnormal_half_spacing(dtype);
  }
  return b;
}

}  // namespace

// ---- CPU-runnable: the dtype contract -------------------------------------------------------

// Half precision runs on the CPU too (tests/test_half_ops.cpp); mixed dtypes are refused by name.
TEST(CudaActivation, MixedDtypesAreAClearError) {
  Tensor x = Tensor::ones({4}, DType::BF16), out = Tensor::empty({4});
  EXPECT_ERROR_MENTIONS(ops::relu_forward(out, x), "relu", "bf16", "f32");
  Tensor dinp = Tensor::zeros({4}, DType::F16);
  EXPECT_ERROR_MENTIONS(ops::gelu_backward(dinp, x, x), "gelu_backward", "bf16", "f16");
  EXPECT_ERROR_MENTIONS(ops::dropout_backward(dinp, x, 0.5f, 1), "dropout_backward", "bf16", "f16");
}

// ---- GPU against CPU ------------------------------------------------------------------------

// Inputs of standard deviation 3 reach GELU's saturated ends and tanh's flat tails. Forward: the
// f32 difference above, plus one rounding. Backward into a random start (checks +=): f32
// difference plus one rounding.
TEST(CudaActivation, ForwardAndBackwardMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(1);
  for (DType dtype : test::cuda_float_dtypes())
    for (const ActivationCase& act : activations())
      for (int64_t n : sizes()) {
        std::string what = std::string(act.name) + " " + dtype_name(dtype) + " n=" + std::to_string(n);
        Tensor x = test::rounded_randn({n}, gen, dtype, 3.0f);
        Tensor ref = Tensor::empty({n}), out = test::poisoned({n}, dtype);
        act.forward(ref, x);
        act.forward(out, test::to_device(x, dtype));
        EXPECT_LT(test::rel_error(out, ref), roundoff(dtype) + act.f32_forward) << what;
        EXPECT_TRUE(test::elementwise_close(out, ref, forward_bounds(act.name, dtype, x, ref))) << what;

        // The backward reads the forward's output for relu/tanh: give both sides the same rounded one.
        Tensor saved = act.backward_takes_output ? ref.to(dtype).to(DType::F32) : x;
        Tensor dout = test::rounded_randn({n}, gen, dtype), dinp0 = test::rounded_randn({n}, gen, dtype);
        Tensor dinp_ref = dinp0.clone(), dinp = test::to_device(dinp0, dtype);
        act.backward(dinp_ref, saved, dout);
        act.backward(dinp, test::to_device(saved, dtype), test::to_device(dout, dtype));
        EXPECT_LT(test::rel_error(dinp, dinp_ref), roundoff(dtype) + act.f32_backward) << what << " backward";
        EXPECT_TRUE(test::elementwise_close(dinp, dinp_ref, backward_bounds(act.name, dtype, saved, dout, dinp0, dinp_ref)))
            << what << " backward";
      }
}

// sigmoid and SiLU, element by element: |gpu - cpu| <= atol + rtol |cpu|. Both devices form
// e = exp(-|x|) within 2 ulp (CUDA's expf, the CPU's polynomial), so e differs by at most 4 ulp,
// and each side adds at most 4 roundings (1 + e, the division, e t, x s or the derivative's
// product chain): 16 ulp of f32 (16 u32) covers the f32 difference. In bf16/f16 the GPU's result
// is rounded once more: + u of the dtype. The tails (x = -100 gives 3.7e-44) are subnormal, where a
// rounding is off by up to half the subnormal spacing of the dtype, not by a fraction of the value:
// that is the atol (f32 2^-150 per rounding, bf16 2^-134, f16 2^-25).
// The backward, dinp0 + dout g(x), differs by the f32 difference of g, 16 u32 of the size of its
// terms (sigmoid' <= 1/4; silu's s + |x s c| <= 1.3), times |dout|, plus one rounding of the sum and,
// in half precision, the final rounding to the dtype.
TEST(CudaActivation, SigmoidAndSiluMatchCpuElementwise) {
  TG_REQUIRE_GPU();
  Generator gen(4);
  const double u32 = std::ldexp(1.0, -24);
  struct Case {
    const char* name;
    void (*forward)(Tensor&, const Tensor&);
    void (*backward)(Tensor&, const Tensor&, const Tensor&);
  };
  const std::vector<Case> cases = {{"sigmoid", ops::sigmoid_forward, ops::sigmoid_backward},
                                   {"silu", ops::silu_forward, ops::silu_backward}};
  for (DType dtype : test::cuda_float_dtypes())
    for (const Case& act : cases)
      for (int64_t n : sizes()) {
        std::string what = std::string(act.name) + " " + dtype_name(dtype) + " n=" + std::to_string(n);
        const double u = roundoff(dtype);
        const double atol = dtype == DType::F32 ? 4 * std::ldexp(1.0, -150)
                                                : (dtype == DType::BF16 ? std::ldexp(1.0, -134) : std::ldexp(1.0, -25));
        // Standard deviation 3, with the extremes written into the first elements.
        Tensor x = test::rounded_randn({n}, gen, dtype, 3.0f);
        const std::vector<float> extremes = {-100.0f, 100.0f, -INFINITY, INFINITY, -20.0f, 20.0f, 0.0f};
        for (size_t i = 0; i < extremes.size() && static_cast<int64_t>(i) < n; i++) x.data<float>()[i] = extremes[i];
        Tensor ref = Tensor::empty({n}), out = test::poisoned({n}, dtype);
        act.forward(ref, x);
        act.forward(out, test::to_device(x, dtype));
        EXPECT_TRUE(test::elementwise_close(out, ref, test::Tolerance{atol, u + 16 * u32})) << what;

        Tensor dout = test::rounded_randn({n}, gen, dtype), dinp0 = test::rounded_randn({n}, gen, dtype);
        Tensor dinp_ref = dinp0.clone(), dinp = test::to_device(dinp0, dtype);
        act.backward(dinp_ref, x, dout);
        act.backward(dinp, test::to_device(x, dtype), test::to_device(dout, dtype));
        std::vector<float> r = dinp_ref.to_vector(), d = dout.to_vector();
        std::vector<double> bounds(r.size());
        for (size_t i = 0; i < r.size(); i++)
          bounds[i] = atol + (u + 2 * u32) * std::fabs(r[i]) + 16 * u32 * 1.3 * std::fabs(d[i]) * (1 + u);
        EXPECT_TRUE(test::elementwise_close(dinp, dinp_ref, bounds)) << what << " backward";
      }
}

// One element past an aligned start sends every pointer down the element path: same answers.
TEST(CudaActivation, MisalignedViewsMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(2);
  for (DType dtype : test::cuda_float_dtypes())
    for (const ActivationCase& act : activations()) {
      Tensor x = test::rounded_randn({1001}, gen, dtype, 3.0f);
      Tensor ref = Tensor::empty({1000});
      act.forward(ref, x.slice(0, 1, 1001));
      Tensor out_base = test::poisoned({1001}, dtype);
      Tensor out = out_base.slice(0, 1, 1001);
      act.forward(out, test::to_device(x, dtype).slice(0, 1, 1001));
      EXPECT_LT(test::rel_error(out, ref), roundoff(dtype) + act.f32_forward) << act.name << " " << dtype_name(dtype);
      EXPECT_TRUE(test::elementwise_close(out, ref, forward_bounds(act.name, dtype, x.slice(0, 1, 1001), ref)))
          << act.name << " " << dtype_name(dtype);
      EXPECT_TRUE(std::isnan(out_base.to_vector()[0])) << act.name << " wrote outside the output view";
    }
}

// The mask: for each key, p and size, the GPU drops exactly the elements the CPU kernel drops
// (inputs of ones, so a zero means dropped), including through a misaligned view (the element
// path); in f32 the kept values are bit for bit the CPU's, in half precision the rounded scale.
TEST(CudaActivation, DropoutMaskIsTheCpuMask) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes())
    for (float p : {0.1f, 0.5f, 0.9f})
      for (int64_t n : sizes())
        for (uint64_t key : {uint64_t{1}, uint64_t{0x9e3779b97f4a7c15ull}}) {
          std::string what = std::string(dtype_name(dtype)) + " p=" + std::to_string(p) + " n=" + std::to_string(n);
          std::vector<float> ones(static_cast<size_t>(n), 1.0f), ref(static_cast<size_t>(n));
          cpu::dropout_forward(ref.data(), ones.data(), n, p, key);
          Tensor out = test::poisoned({n}, dtype);
          ops::dropout_forward(out, Tensor::ones({n}, dtype, test::gpu()), p, key);
          std::vector<float> got = out.to_vector();
          float kept = Tensor::full({1}, 1.0f / (1.0f - p), dtype).to_vector()[0];  // the scale, rounded
          int64_t mismatches = 0;
          for (int64_t i = 0; i < n; i++) {
            bool cpu_kept = ref[i] != 0.0f, gpu_kept = got[i] != 0.0f;
            if (cpu_kept != gpu_kept || (gpu_kept && got[i] != (dtype == DType::F32 ? ref[i] : kept))) mismatches++;
          }
          EXPECT_EQ(mismatches, 0) << what;

          // The same mask through a view starting one element in: element i of the view is element
          // i of the mask (the index is the view's own).
          Tensor base = test::poisoned({n + 1}, dtype);
          Tensor view = base.slice(0, 1, n + 1);
          ops::dropout_forward(view, Tensor::ones({n + 1}, dtype, test::gpu()).slice(0, 1, n + 1), p, key);
          EXPECT_EQ(std::memcmp(view.to_vector().data(), got.data(), got.size() * sizeof(float)), 0) << what << " view";
        }
}

// Forward values on random inputs (a multiply of identical inputs by the identical factor: f32
// exact, one rounding in half precision) and the backward's += with the forward's mask.
TEST(CudaActivation, DropoutForwardAndBackwardMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(3);
  const uint64_t key = 0xdeadbeefcafef00dull;
  for (DType dtype : test::cuda_float_dtypes())
    for (int64_t n : sizes()) {
      std::string what = std::string(dtype_name(dtype)) + " n=" + std::to_string(n);
      Tensor x = test::rounded_randn({n}, gen, dtype);
      Tensor ref = Tensor::empty({n}), out = test::poisoned({n}, dtype);
      ops::dropout_forward(ref, x, 0.3f, key);
      ops::dropout_forward(out, test::to_device(x, dtype), 0.3f, key);
      EXPECT_LT(test::rel_error(out, ref), roundoff(dtype)) << what;
      // x times the same f32 scale on both sides, rounded once on the GPU.
      EXPECT_TRUE(test::elementwise_close(out, ref, test::f32_tolerance(dtype, 0))) << what;
      if (dtype == DType::F32) {
        std::vector<float> a = out.to_vector(), b = ref.to_vector();
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what << " not bit for bit";
      }

      Tensor dout = test::rounded_randn({n}, gen, dtype), dinp0 = test::rounded_randn({n}, gen, dtype);
      Tensor dinp_ref = dinp0.clone(), dinp = test::to_device(dinp0, dtype);
      ops::dropout_backward(dinp_ref, dout, 0.3f, key);
      ops::dropout_backward(dinp, test::to_device(dout, dtype), 0.3f, key);
      // One rounding, plus 2 f32 ulps for a multiply-add the GPU may fuse.
      EXPECT_LT(test::rel_error(dinp, dinp_ref), roundoff(dtype) + 2e-7) << what << " backward";
      // Element-wise that fused add is off by up to an ulp of each term, |dinp0| + |dout| / (1 - p),
      // not of the sum (which may cancel): 2 u of the terms' sizes, then the rounding.
      {
        const double u = std::ldexp(1.0, -24), R = dtype == DType::F32 ? 0.0 : roundoff(dtype);
        std::vector<float> d0 = dinp0.to_vector(), g = dout.to_vector(), r = dinp_ref.to_vector();
        std::vector<double> bounds(r.size());
        for (size_t i = 0; i < r.size(); i++) {
          const double d = 2 * u * (std::fabs(d0[i]) + std::fabs(g[i]) / 0.7);
          bounds[i] = d + R * (std::fabs(r[i]) + d) + test::subnormal_half_spacing(dtype);
        }
        EXPECT_TRUE(test::elementwise_close(dinp, dinp_ref, bounds)) << what << " backward";
      }
    }
}

// Through the differentiable call: the same seed gives the same key, hence the same mask, on both
// devices, and the output keeps the input's dtype.
TEST(CudaActivation, DropoutSameSeedSameMaskOnBothDevices) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes()) {
    Generator cpu_gen(42), gpu_gen(42);
    std::vector<float> ref = dropout(Tensor::ones({4099}), 0.25f, true, &cpu_gen).to_vector();
    Tensor y = dropout(Tensor::ones({4099}, dtype, test::gpu()), 0.25f, true, &gpu_gen);
    EXPECT_EQ(y.dtype(), dtype);
    std::vector<float> got = y.to_vector();
    int64_t mismatches = 0;
    for (size_t i = 0; i < got.size(); i++) mismatches += (ref[i] == 0.0f) != (got[i] == 0.0f);
    EXPECT_EQ(mismatches, 0) << dtype_name(dtype);
  }
}
