// Causal self-attention on CUDA against the CPU kernel: forward (out, lse) and backward (dqkv +=)
// for f32, bf16 and f16, head sizes of the tensor-core path (32, 64, 128, bf16/f16 only) and of
// the SIMT path (12, 33, 48, 80, and every head size in f32), T awkward for every tile size (1, 17,
// 100, 257, 1100); determinism; bad input (the CPU-side checks run without a GPU too).
//
// Inputs are rounded to the dtype first, so the CPU reference sees exactly the GPU's values. The
// backward is tested on its own: both sides get the same out (the CPU forward's, rounded to the
// dtype as a GPU forward would store it) and the same f32 lse, so only the backward kernel's own
// roundings show.
//
// Tolerances (relative error, test::rel_error, = ||gpu - cpu|| / ||cpu||):
// - f32: 1e-5. Both sides compute in f32 from the same inputs; they differ by summation order
//   (HS-term dot products, sums over up to T keys) and by exp (the CPU's polynomial vs exp2f, each
//   within 2 ulp): a few 1e-7 relative, 1e-5 leaves room for sums over T = 1100 keys.
// - bf16/f16, SIMT path: one rounding, the store of out (forward) or of dqkv + gradient
//   (backward), each within the unit roundoff 2^-8 (bf16, 8 significant bits) or 2^-11 (f16, 11)
//   of the f32 value;
//   the norm ratio is at most the largest element ratio. Tolerance: that unit + the f32 1e-5.
// - bf16/f16, tensor-core path: two roundings. Forward: P is rounded to the dtype before O += P V
//   (the tensor cores take 16-bit operands), then out on store. Backward: P (for dV) or dS (for
//   dK, dQ) rounded before its product, then the store. Each rounding moves an element by at most
//   one unit, and a weighted sum of rounded terms by at most one unit of the sum of magnitudes;
//   with random signs that is about one unit of the sum itself, so 2 units + the f32 1e-5.
// - lse: f32 on every path (scores from 16-bit inputs are exact products summed in f32, the
//   softmax sum uses unrounded P): 1e-5 for every dtype.
//
// Element-wise bounds (test::elementwise_close), from the terms summed into each element, which
// attention_bounds() computes in double (u = 2^-24, R the dtype's unit roundoff, 0 for f32):
// - a score s_tj = scale q_t . k_j, HS products summed in f32 in any order on each side, differs
//   by 2 HS u sigma_tj, sigma_tj = scale sum_i |q_ti k_ji|;
// - P_tj = exp(s_tj - lse_t): relative difference 2 HS u sigma_tj + 8 u (two exps within 2 ulp
//   and a subtraction each), and in the forward the lse's own difference (below) besides; both
//   sides' online softmax rescales its running sum and output at most once per block of 16 or
//   more keys, 4 u per rescale: (T / 16 + 1) 8 u more;
// - out_td = sum_j P_tj v_jd: P's relative difference times M_td = sum_j P_tj |v_jd|, plus the sums
//   over up to T keys, 2 T u M_td; on the tensor-core path P is rounded to the dtype first: R M_td;
// - lse_t: the largest score difference of the row plus 2 T u of the sum of exps (relative, so
//   absolute in the log) and 8 u |lse_t| for the log and the max;
// - backward, dS_tj = P_tj (dP_tj - D_t) with dP_tj = dO_t . V_j and D_t = dO_t . out_t (HS terms
//   each) has a difference of at most (P's relative difference + 2 HS u) A_tj,
//   A_tj = P_tj (sum_i |dO_ti V_ji| + sum_i |dO_ti out_ti|), and R A_tj more where the tensor-core
//   path rounds dS (or P, for dV); then dQ_t = scale sum_j dS_tj K_j, dK_j = scale sum_t dS_tj Q_t,
//   dV_j = sum_t P_tj dO_t add 2 T u of their magnitudes M = scale sum |dS| |K| (etc.), and the add
//   into the buffer 2 u (|start| + |gradient|).
// Each GPU element is then rounded once to the dtype: + R (|ref| + d) + the subnormal half-spacing.
// These worst-case sums are far above the errors the norm-wise checks see (random signs cancel),
// but still far below a wrong element, which is off by the size of M itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/attention.h"
#include "ops/attention.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;
using tg::test::gpu;
using tg::test::rel_error;
using tg::test::rounded_randn;
using tg::test::to_device;

namespace {

constexpr double kF32Tolerance = 1e-5;

double rounding_unit(DType dtype) {
  switch (dtype) {
    case DType::BF16: return std::ldexp(1.0, -8);
    case DType::F16: return std::ldexp(1.0, -11);
    default: return 0.0;
  }
}

bool tensor_core_path(DType dtype, int64_t hs) { return dtype != DType::F32 && (hs == 32 || hs == 64 || hs == 128); }

// The derived tolerance for out and dqkv (see the top of the file).
double tolerance(DType dtype, int64_t hs) {
  const int roundings = tensor_core_path(dtype, hs) ? 2 : 1;
  return roundings * rounding_unit(dtype) + kF32Tolerance;
}

struct Case {
  int64_t B, T, NH, HS;
  std::string str(DType dtype) const {
    return std::string(dtype_name(dtype)) + " B=" + std::to_string(B) + " T=" + std::to_string(T) +
           " NH=" + std::to_string(NH) + " HS=" + std::to_string(HS);
  }
};

// Every head size on both paths with every awkward T; B*NH of several heads, fewer at T = 1100
// so that the CPU reference stays quick.
std::vector<Case> cases() {
  std::vector<Case> all;
  for (int64_t hs : {12, 33, 48, 80, 32, 64, 128})  // 33: the SIMT dot products' non-float4 loop
    for (int64_t T : {1, 17, 100, 257, 1100}) all.push_back(T > 1000 ? Case{1, T, 2, hs} : Case{2, T, 3, hs});
  // The largest head size the SIMT path takes (shared memory past 48 KB, opted in at launch).
  for (int64_t T : {1, 100, 257}) all.push_back(Case{1, T, 2, 256});
  return all;
}

struct Forward {
  Tensor out, lse;  // CPU f32
};

// Per-element bounds for out, lse and dqkv (see the top of the file), from qkv, the rounded out and
// dout as both sides see them, and the buffer's start.
struct Bounds {
  std::vector<double> out, lse, dqkv;
};

Bounds attention_bounds(const Case& c, DType dtype, const Tensor& qkv_t, const Tensor& out_t, const Tensor& dout_t,
                        const Tensor& start_t, const Tensor& out_ref, const Tensor& lse_ref, const Tensor& dqkv_ref) {
  const double u = std::ldexp(1.0, -24), R = rounding_unit(dtype);
  const double tc = tensor_core_path(dtype, c.HS) ? R : 0.0;
  const int64_t T = c.T, HS = c.HS, C = c.NH * HS;
  const double scale = 1.0 / std::sqrt(static_cast<double>(HS));
  const std::vector<float> qkv = qkv_t.to_vector(), out = out_t.to_vector(), dout = dout_t.to_vector();
  const std::vector<float> start = start_t.to_vector(), oref = out_ref.to_vector(), lref = lse_ref.to_vector();
  const std::vector<float> gref = dqkv_ref.to_vector();
  std::vector<double> m_out(out.size(), 0), d_lse(lref.size(), 0), m_dqkv(qkv.size(), 0), d_out(out.size(), 0);
  std::vector<double> d_dqkv(qkv.size(), 0);
  const double rescales = (static_cast<double>(T) / 16 + 1) * 8 * u;
  std::vector<double> s(T), sigma(T), p(T);
  for (int64_t b = 0; b < c.B; b++)
    for (int64_t h = 0; h < c.NH; h++) {
      auto q = [&](int64_t t, int64_t i) { return static_cast<double>(qkv[(b * T + t) * 3 * C + h * HS + i]); };
      auto k = [&](int64_t t, int64_t i) { return static_cast<double>(qkv[(b * T + t) * 3 * C + C + h * HS + i]); };
      auto v = [&](int64_t t, int64_t i) { return static_cast<double>(qkv[(b * T + t) * 3 * C + 2 * C + h * HS + i]); };
      auto o = [&](int64_t t, int64_t i) { return static_cast<double>(out[(b * T + t) * C + h * HS + i]); };
      auto g = [&](int64_t t, int64_t i) { return static_cast<double>(dout[(b * T + t) * C + h * HS + i]); };
      auto grad_at = [&](int64_t t, int64_t part, int64_t i) { return (b * T + t) * 3 * C + part * C + h * HS + i; };
      for (int64_t t = 0; t < T; t++) {
        double mx = -INFINITY, max_ds = 0;
        for (int64_t j = 0; j <= t; j++) {
          double dot = 0, mag = 0;
          for (int64_t i = 0; i < HS; i++) {
            dot += q(t, i) * k(j, i);
            mag += std::fabs(q(t, i) * k(j, i));
          }
          s[j] = dot * scale;
          sigma[j] = mag * scale;
          mx = std::max(mx, s[j]);
          max_ds = std::max(max_ds, 2 * HS * u * sigma[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= t; j++) sum += std::exp(s[j] - mx);
        const double lse = mx + std::log(sum);
        for (int64_t j = 0; j <= t; j++) p[j] = std::exp(s[j] - lse);
        const size_t li = static_cast<size_t>((b * c.NH + h) * T + t);
        d_lse[li] = max_ds + 2 * T * u + 8 * u * std::fabs(lse);
        // D_t and the dS magnitudes of row t.
        double D_mag = 0;
        for (int64_t i = 0; i < HS; i++) D_mag += std::fabs(g(t, i) * o(t, i));
        for (int64_t j = 0; j <= t; j++) {
          const double rel_p_fwd = 2 * HS * u * sigma[j] + 8 * u + d_lse[li] + rescales;
          const double rel_p_bwd = 2 * HS * u * sigma[j] + 8 * u;
          double dP_mag = 0;
          for (int64_t i = 0; i < HS; i++) dP_mag += std::fabs(g(t, i) * v(j, i));
          const double A = p[j] * (dP_mag + D_mag);
          for (int64_t i = 0; i < HS; i++) {
            const size_t oi = static_cast<size_t>((b * T + t) * C + h * HS + i);
            m_out[oi] += p[j] * std::fabs(v(j, i));
            d_out[oi] += (rel_p_fwd + tc) * p[j] * std::fabs(v(j, i));
            // dQ_t += scale dS_tj K_j, dK_j += scale dS_tj Q_t, dV_j += P_tj dO_t.
            const double dq = scale * A * std::fabs(k(j, i)), dk = scale * A * std::fabs(q(t, i));
            const double dv = p[j] * std::fabs(g(t, i));
            const size_t qi = static_cast<size_t>(grad_at(t, 0, i)), ki = static_cast<size_t>(grad_at(j, 1, i));
            const size_t vi = static_cast<size_t>(grad_at(j, 2, i));
            m_dqkv[qi] += dq;
            m_dqkv[ki] += dk;
            m_dqkv[vi] += dv;
            d_dqkv[qi] += (rel_p_bwd + 2 * HS * u + tc) * dq;
            d_dqkv[ki] += (rel_p_bwd + 2 * HS * u + tc) * dk;
            d_dqkv[vi] += (rel_p_bwd + tc) * dv;
          }
        }
      }
    }
  Bounds bounds;
  const double tiny = test::subnormal_half_spacing(dtype);
  bounds.out.resize(out.size());
  for (size_t i = 0; i < out.size(); i++) {
    const double d = d_out[i] + 2 * T * u * m_out[i];
    bounds.out[i] = d + R * (std::fabs(oref[i]) + d) + tiny;
  }
  bounds.lse = d_lse;
  bounds.dqkv.resize(qkv.size());
  for (size_t i = 0; i < qkv.size(); i++) {
    const double d = d_dqkv[i] + 2 * T * u * m_dqkv[i] + 2 * u * (std::fabs(start[i]) + std::fabs(gref[i] - start[i]));
    bounds.dqkv[i] = d + R * (std::fabs(gref[i]) + d) + tiny;
  }
  return bounds;
}

Forward cpu_forward(const Tensor& qkv, int64_t NH) {
  Tensor out = Tensor::empty({qkv.size(0), qkv.size(1), qkv.size(2) / 3});
  Tensor lse = Tensor::empty({qkv.size(0), NH, qkv.size(1)});
  ops::attention_forward(out, lse, qkv, NH);
  return {out, lse};
}

TEST(CudaAttention, ForwardMatchesCpu) {
  TG_REQUIRE_GPU();
  uint64_t seed = 1;
  for (DType dtype : test::cuda_float_dtypes())
    for (const Case& c : cases()) {
      Generator gen(seed++);
      const int64_t C = c.NH * c.HS;
      Tensor qkv = rounded_randn({c.B, c.T, 3 * C}, gen, dtype);
      Forward ref = cpu_forward(qkv, c.NH);
      Tensor out = test::poisoned({c.B, c.T, C}, dtype), lse = test::poisoned({c.B, c.NH, c.T}, DType::F32);
      ops::attention_forward(out, lse, to_device(qkv, dtype), c.NH);
      EXPECT_LT(rel_error(out, ref.out), tolerance(dtype, c.HS)) << c.str(dtype);
      EXPECT_LT(rel_error(lse, ref.lse), kF32Tolerance) << c.str(dtype);
      const Tensor none = Tensor::zeros(qkv.shape());
      const Bounds b = attention_bounds(c, dtype, qkv, ref.out, Tensor::zeros(ref.out.shape()), none, ref.out, ref.lse, none);
      EXPECT_TRUE(test::elementwise_close(out, ref.out, b.out)) << c.str(dtype);
      EXPECT_TRUE(test::elementwise_close(lse, ref.lse, b.lse)) << c.str(dtype);
    }
}

// Runs the CPU and GPU backward on the same qkv, out (rounded to the dtype), lse and dout, into
// buffers that start as `initial` (rounded to the dtype, the GPU's poisoned-free start: every
// element is added into); checks every element against its bound and returns the relative error.
double backward_error(const Case& c, DType dtype, uint64_t seed, bool random_initial) {
  Generator gen(seed);
  const int64_t C = c.NH * c.HS;
  Tensor qkv = rounded_randn({c.B, c.T, 3 * C}, gen, dtype);
  Tensor dout = rounded_randn({c.B, c.T, C}, gen, dtype);
  Forward f = cpu_forward(qkv, c.NH);
  Tensor out = f.out.to(dtype).to(DType::F32);  // what a forward in this dtype stores
  Tensor initial = random_initial ? rounded_randn(qkv.shape(), gen, dtype) : Tensor::zeros(qkv.shape());

  Tensor ref = Tensor::from_vector(initial.to_vector(), initial.shape());  // a private copy to add into
  ops::attention_backward(ref, dout, qkv, out, f.lse, c.NH);

  Tensor dqkv = to_device(initial, dtype);
  ops::attention_backward(dqkv, to_device(dout, dtype), to_device(qkv, dtype), to_device(out, dtype),
                          f.lse.to(gpu()), c.NH);
  const Bounds b = attention_bounds(c, dtype, qkv, out, dout, initial, f.out, f.lse, ref);
  EXPECT_TRUE(test::elementwise_close(dqkv, ref, b.dqkv)) << c.str(dtype);
  return rel_error(dqkv, ref);
}

TEST(CudaAttention, BackwardMatchesCpu) {
  TG_REQUIRE_GPU();
  uint64_t seed = 1000;
  for (DType dtype : test::cuda_float_dtypes())
    for (const Case& c : cases())
      EXPECT_LT(backward_error(c, dtype, seed++, false), tolerance(dtype, c.HS)) << c.str(dtype);
}

// The kernels add into dqkv: a buffer that starts random must end as start + gradient. An
// overwrite would be off by the whole start (relative error ~1).
TEST(CudaAttention, BackwardAddsIntoTheGradientBuffer) {
  TG_REQUIRE_GPU();
  uint64_t seed = 2000;
  for (DType dtype : test::cuda_float_dtypes())
    for (const Case& c : {Case{2, 100, 3, 64}, Case{2, 100, 3, 12}, Case{1, 257, 2, 128}})
      EXPECT_LT(backward_error(c, dtype, seed++, true), tolerance(dtype, c.HS)) << c.str(dtype);
}

// Same inputs -> the same bits: no atomics, fixed summation orders (what makes same seed -> same
// losses hold on the GPU). Both paths, long enough for several tiles in every loop.
TEST(CudaAttention, BackwardIsBitwiseDeterministic) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes())
    for (const Case& c : {Case{2, 300, 3, 64}, Case{2, 300, 2, 48}}) {
      Generator gen(7);
      const int64_t C = c.NH * c.HS;
      Tensor qkv = to_device(rounded_randn({c.B, c.T, 3 * C}, gen, dtype), dtype);
      Tensor dout = to_device(rounded_randn({c.B, c.T, C}, gen, dtype), dtype);
      Tensor out = test::poisoned({c.B, c.T, C}, dtype), lse = test::poisoned({c.B, c.NH, c.T}, DType::F32);
      ops::attention_forward(out, lse, qkv, c.NH);
      std::vector<float> first;
      for (int run = 0; run < 2; run++) {
        Tensor dqkv = Tensor::zeros(qkv.shape(), dtype, gpu());
        ops::attention_backward(dqkv, dout, qkv, out, lse, c.NH);
        std::vector<float> values = dqkv.to_vector();
        if (run == 0) first = values;
        else EXPECT_EQ(0, std::memcmp(first.data(), values.data(), values.size() * sizeof(float))) << c.str(dtype);
      }
    }
}

// Through autograd: the output takes qkv's dtype, lse stays internal, and the gradient reaching
// qkv matches the CPU's.
TEST(CudaAttention, AutogradOutputDtypeAndGradient) {
  TG_REQUIRE_GPU();
  const Case c{2, 70, 2, 64};
  for (DType dtype : test::cuda_float_dtypes()) {
    Generator gen(31);
    Tensor qkv_cpu = rounded_randn({c.B, c.T, 3 * c.NH * c.HS}, gen, dtype);
    Tensor dout_cpu = rounded_randn({c.B, c.T, c.NH * c.HS}, gen, dtype);
    Tensor qkv = to_device(qkv_cpu, dtype).requires_grad_(true);
    Tensor y = causal_self_attention(qkv, c.NH);
    EXPECT_EQ(y.dtype(), dtype);
    EXPECT_TRUE(y.device().is_cuda());
    backward(y, to_device(dout_cpu, dtype));
    ASSERT_TRUE(qkv.grad().defined());
    EXPECT_EQ(qkv.grad().dtype(), dtype);

    qkv_cpu.requires_grad_(true);
    Tensor y_cpu = causal_self_attention(qkv_cpu, c.NH);
    backward(y_cpu, dout_cpu);
    EXPECT_LT(rel_error(y, y_cpu), tolerance(dtype, c.HS)) << dtype_name(dtype);
    {
      const Tensor none = Tensor::zeros(qkv_cpu.shape()), yd = y_cpu.detach();
      const Bounds b = attention_bounds(c, dtype, qkv_cpu.detach(), yd, Tensor::zeros(yd.shape()), none, yd,
                                        cpu_forward(qkv_cpu.detach(), c.NH).lse, none);
      EXPECT_TRUE(test::elementwise_close(y, yd, b.out)) << dtype_name(dtype);
    }
    // The GPU backward ran on the GPU forward's out and lse, so the forward's error reaches the
    // gradient through D = rowsum(dout * out): the two budgets add.
    EXPECT_LT(rel_error(qkv.grad(), qkv_cpu.grad()), 2 * tolerance(dtype, c.HS)) << dtype_name(dtype);
  }
}

TEST(CudaAttention, HeadSizeAbove256ThrowsNamingIt) {
  TG_REQUIRE_GPU();
  Tensor qkv = Tensor::zeros({1, 4, 3 * 264}, DType::BF16, gpu());
  EXPECT_ERROR_MENTIONS(causal_self_attention(qkv, 1), "causal_self_attention", "HS = 264");
}

// ---- CPU-runnable: argument checks ------------------------------------------------------------

// bf16 and f16 run on the CPU too (tests/test_attention_half.cpp); an integer qkv is named.
TEST(CudaAttention, IntegerQkvThrowsNamingDtype) {
  Tensor qkv = Tensor::zeros({1, 4, 12}, DType::I32);
  EXPECT_ERROR_MENTIONS(causal_self_attention(qkv, 2), "causal_self_attention", "qkv", "i32", "f32");
}

TEST(CudaAttention, MismatchedDtypesThrowNamingBoth) {
  Tensor qkv = Tensor::zeros({1, 4, 12});
  Tensor out16 = Tensor::empty({1, 4, 4}, DType::F16), lse = Tensor::empty({1, 2, 4});
  EXPECT_ERROR_MENTIONS(ops::attention_forward(out16, lse, qkv, 2), "causal_self_attention", "out", "f16", "f32");
  Tensor out = Tensor::empty({1, 4, 4}), lse16 = Tensor::empty({1, 2, 4}, DType::BF16);
  EXPECT_ERROR_MENTIONS(ops::attention_forward(out, lse16, qkv, 2), "causal_self_attention", "lse", "bf16", "f32");
  Tensor dqkv = Tensor::zeros({1, 4, 12}, DType::BF16), dout = Tensor::zeros({1, 4, 4});
  EXPECT_ERROR_MENTIONS(ops::attention_backward(dqkv, dout, qkv, out, lse, 2), "causal_self_attention", "dqkv",
                        "bf16");
}

}  // namespace
