// LayerNorm on CUDA against the CPU kernel: forward (warp-per-row and block-per-row paths, vector
// and element paths), the fused residual add + LayerNorm against the CPU composition, backward with
// pre-filled gradient buffers (+=), determinism, and the CPU-side errors for half precision.
//
// Tolerances (relative error ||out - ref|| / ||ref||), per dtype:
//   f32: both sides compute in f32 from the same inputs and differ only in the order of their sums
//        (C or N terms, tree on the GPU, SIMD lanes on the CPU). Each sum's rounding errors are
//        independent, ~sqrt(C) 2^-24 ~ 2e-6 relative for C = 1500, so 1e-5 keeps a margin of 4.
//   bf16 / f16 outputs: the kernel rounds each output once (the reference stays in f32): within
//        u = 2^-8 (bf16 keeps 8 significant bits) or 2^-11 (f16, 11 bits) relative, plus the f32
//        term above.
//   mean, rstd: f32 results from identical (rounded) inputs in every dtype: the f32 tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/layernorm.h"
#include "ops/layernorm.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

constexpr double kF32Tolerance = 1e-5;

// One rounding of the result to `dtype`, plus the f32 term.
double rounded_tolerance(DType dtype) {
  return (dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype)) + kF32Tolerance;
}

Shape rows_of(int64_t N) { return {N}; }

// Element-wise bounds (test::elementwise_close), worst cases of the reduction lengths, u = 2^-24:
//   mean = sum x / C: each side within (C - 1) u of sum |x| / C, so they differ by
//     2 C u mean|x| (per row).
//   rstd = 1 / sqrt(var + eps): var sums C squares (terms of one sign; a side that forms
//     E[x^2] - mean^2 instead loses at most a factor 2 to cancellation for these inputs, whose
//     mean is small against their spread): (2C + 8) u relative between the sides, halved by the
//     sqrt, plus the roundings of sqrt, the division and the square: (2C + 8) u relative.
//   y = (x - mean) rstd w + b: the mean's difference times rstd, norm's relative difference from
//     rstd and 2 roundings, then w and b: d = |w| (2 C u mean|x| rstd + (2C + 10) u |norm|)
//     + 2 u (|norm w| + |b|).
//   backward dx = dx0 + rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)), dnorm = dout w: the two
//     means sum C terms (2 (C + 2) u of their magnitudes between the sides), the rest rounds a few
//     times (6 u of the terms' sizes T), the add 2 u (|dx0| + |term|).
//   dw = dw0 + sum_n dout norm, db = db0 + sum_n dout: 2 (N + 2) u of the magnitudes.
// Then the GPU rounds once to the dtype: + R (|ref| + d) + the subnormal half-spacing.
struct RowStats {
  std::vector<double> mean, rstd, mean_abs;
};
RowStats row_stats(const Tensor& x_t, float eps) {
  const std::vector<float> x = x_t.to_vector();
  const int64_t C = x_t.size(1), N = x_t.size(0);
  RowStats r;
  for (int64_t n = 0; n < N; n++) {
    double sum = 0, abs = 0, var = 0;
    for (int64_t c = 0; c < C; c++) {
      sum += x[n * C + c];
      abs += std::fabs(x[n * C + c]);
    }
    const double m = sum / C;
    for (int64_t c = 0; c < C; c++) var += (x[n * C + c] - m) * (x[n * C + c] - m);
    r.mean.push_back(m);
    r.rstd.push_back(1 / std::sqrt(var / C + eps));
    r.mean_abs.push_back(abs / C);
  }
  return r;
}

double finish(DType dtype, double d, double ref) {
  const double R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  return d + R * (std::fabs(ref) + d) + test::subnormal_half_spacing(dtype);
}

std::vector<double> forward_bounds(DType dtype, const Tensor& x_t, const Tensor& w_t, const Tensor& b_t,
                                   const Tensor& ref_t) {
  const double u = std::ldexp(1.0, -24);
  const int64_t N = x_t.size(0), C = x_t.size(1);
  const RowStats st = row_stats(x_t, 1e-5f);
  const std::vector<float> x = x_t.to_vector(), ref = ref_t.to_vector();
  const std::vector<float> w = w_t.defined() ? w_t.to_vector() : std::vector<float>(C, 1.0f);
  const std::vector<float> b = b_t.defined() ? b_t.to_vector() : std::vector<float>(C, 0.0f);
  std::vector<double> bounds(ref.size());
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      const size_t i = static_cast<size_t>(n * C + c);
      const double norm = (x[i] - st.mean[n]) * st.rstd[n];
      const double d = std::fabs(w[c]) * (2 * C * u * st.mean_abs[n] * st.rstd[n] + (2 * C + 10) * u * std::fabs(norm)) +
                       2 * u * (std::fabs(norm * w[c]) + std::fabs(b[c]));
      bounds[i] = finish(dtype, d, ref[i]);
    }
  return bounds;
}

// mean: 2 C u mean|x| absolute per row; rstd: (2C + 8) u relative.
std::vector<double> mean_bounds(const Tensor& x_t) {
  const RowStats st = row_stats(x_t, 1e-5f);
  std::vector<double> b;
  for (double a : st.mean_abs) b.push_back(2.0 * static_cast<double>(x_t.size(1)) * std::ldexp(1.0, -24) * a + 1e-45);
  return b;
}
test::Tolerance rstd_tolerance(int64_t C) { return {0.0, (2.0 * static_cast<double>(C) + 8) * std::ldexp(1.0, -24)}; }

struct GradBounds {
  std::vector<double> dx, dw, db;
};
GradBounds backward_bounds(DType dtype, const Tensor& x_t, const Tensor& w_t, const Tensor& dout_t, const Tensor& mean_t,
                           const Tensor& rstd_t, const Tensor& dx0_t, const Tensor& dw0_t, const Tensor& db0_t,
                           const Tensor& dx_t, const Tensor& dw_t, const Tensor& db_t) {
  const double u = std::ldexp(1.0, -24);
  const int64_t N = x_t.size(0), C = x_t.size(1);
  const std::vector<float> x = x_t.to_vector(), g = dout_t.to_vector(), mean = mean_t.to_vector(), rstd = rstd_t.to_vector();
  const std::vector<float> w = w_t.defined() ? w_t.to_vector() : std::vector<float>(C, 1.0f);
  GradBounds out;
  std::vector<double> dw_mag(C, 0), db_mag(C, 0);
  if (dx_t.defined()) {
    const std::vector<float> dx0 = dx0_t.to_vector(), dx = dx_t.to_vector();
    out.dx.resize(dx.size());
    for (int64_t n = 0; n < N; n++) {
      double m1 = 0, m2 = 0;
      for (int64_t c = 0; c < C; c++) {
        const double norm = (x[n * C + c] - mean[n]) * rstd[n];
        m1 += std::fabs(g[n * C + c] * w[c]) / C;
        m2 += std::fabs(g[n * C + c] * w[c] * norm) / C;
      }
      for (int64_t c = 0; c < C; c++) {
        const size_t i = static_cast<size_t>(n * C + c);
        const double norm = (x[i] - mean[n]) * rstd[n];
        const double T = rstd[n] * (std::fabs(g[i] * w[c]) + m1 + std::fabs(norm) * m2);
        const double d = rstd[n] * 2 * (C + 2) * u * (m1 + std::fabs(norm) * m2) + 6 * u * T +
                         2 * u * (std::fabs(dx0[i]) + std::fabs(dx[i] - dx0[i]));
        out.dx[i] = finish(dtype, d, dx[i]);
      }
    }
  }
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      const double norm = (x[n * C + c] - mean[n]) * rstd[n];
      dw_mag[c] += std::fabs(g[n * C + c] * norm);
      db_mag[c] += std::fabs(g[n * C + c]);
    }
  if (dw_t.defined()) {
    const std::vector<float> dw0 = dw0_t.to_vector(), dw = dw_t.to_vector();
    for (int64_t c = 0; c < C; c++) out.dw.push_back(finish(dtype, 2 * (N + 2) * u * (dw_mag[c] + std::fabs(dw0[c])), dw[c]));
  }
  if (db_t.defined()) {
    const std::vector<float> db0 = db0_t.to_vector(), db = db_t.to_vector();
    for (int64_t c = 0; c < C; c++) out.db.push_back(finish(dtype, 2 * (N + 2) * u * (db_mag[c] + std::fabs(db0[c])), db[c]));
  }
  return out;
}

struct Sizes {
  int64_t N, C;
};
// C: 1 (variance 0), 7 and 33 (element path for every dtype, warp per row), 384 (vector path),
// 769 (element path, warp per row, many slots), 1500 (block per row; vector path in f32 only).
// C = 1536: above the one-warp limit and a multiple of 8, so bf16/f16 take the vector block path.
const std::vector<Sizes> kSizes = {{37, 1}, {5, 7}, {257, 33}, {129, 384}, {33, 769}, {19, 1500}, {1, 384}, {23, 1536}};

}  // namespace

TEST(CudaLayerNorm, ForwardMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(501);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (Sizes s : kSizes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
      // An offset of 0.5 on x: a mean away from 0, as real activations have.
      std::vector<float> xv = Tensor::randn({s.N, s.C}, &gen).to_vector();
      for (float& v : xv) v = 2.0f * v + 0.5f;
      Tensor x = Tensor::from_vector(xv, {s.N, s.C}).to(dtype).to(DType::F32);
      Tensor w = test::rounded_randn({s.C}, gen, dtype), b = test::rounded_randn({s.C}, gen, dtype);
      Tensor ref = Tensor::empty({s.N, s.C}), ref_mean = Tensor::empty(rows_of(s.N)), ref_rstd = Tensor::empty(rows_of(s.N));
      ops::layernorm_forward(ref, ref_mean, ref_rstd, x, w, b, 1e-5f);

      Tensor out = test::poisoned({s.N, s.C}, dtype), mean = test::poisoned(rows_of(s.N), DType::F32),
             rstd = test::poisoned(rows_of(s.N), DType::F32);
      Tensor xg = test::to_device(x, dtype), wg = test::to_device(w, dtype), bg = test::to_device(b, dtype);
      ops::layernorm_forward(out, mean, rstd, xg, wg, bg, 1e-5f);
      EXPECT_EQ(out.dtype(), dtype);
      EXPECT_LT(test::rel_error(out, ref), rounded_tolerance(dtype));
      EXPECT_LT(test::rel_error(mean, ref_mean), kF32Tolerance);
      EXPECT_LT(test::rel_error(rstd, ref_rstd), kF32Tolerance);
      EXPECT_TRUE(test::elementwise_close(out, ref, forward_bounds(dtype, x, w, b, ref)));
      EXPECT_TRUE(test::elementwise_close(mean, ref_mean, mean_bounds(x)));
      EXPECT_TRUE(test::elementwise_close(rstd, ref_rstd, rstd_tolerance(s.C)));
    }
  }
}

// No weight / no bias: the kernels' null-pointer paths (scale 1, shift 0).
TEST(CudaLayerNorm, ForwardWithoutAffine) {
  TG_REQUIRE_GPU();
  Generator gen(502);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (int64_t C : {33, 1500}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " C=" + std::to_string(C));
      Tensor x = test::rounded_randn({11, C}, gen, dtype), w = test::rounded_randn({C}, gen, dtype);
      Tensor ref = Tensor::empty({11, C}), m = Tensor::empty({11}), r = Tensor::empty({11});
      ops::layernorm_forward(ref, m, r, x, Tensor(), Tensor(), 1e-5f);
      Tensor out = test::poisoned({11, C}, dtype), mg = test::poisoned({11}, DType::F32), rg = test::poisoned({11}, DType::F32);
      ops::layernorm_forward(out, mg, rg, test::to_device(x, dtype), Tensor(), Tensor(), 1e-5f);
      EXPECT_LT(test::rel_error(out, ref), rounded_tolerance(dtype));
      EXPECT_TRUE(test::elementwise_close(out, ref, forward_bounds(dtype, x, Tensor(), Tensor(), ref)));
      // Weight only.
      ops::layernorm_forward(ref, m, r, x, w, Tensor(), 1e-5f);
      out = test::poisoned({11, C}, dtype);
      ops::layernorm_forward(out, mg, rg, test::to_device(x, dtype), test::to_device(w, dtype), Tensor(), 1e-5f);
      EXPECT_LT(test::rel_error(out, ref), rounded_tolerance(dtype));
      EXPECT_TRUE(test::elementwise_close(out, ref, forward_bounds(dtype, x, w, Tensor(), ref)));
    }
  }
}

// Rows that start off a 16-byte boundary (a view one element into its storage) must take the
// element path and still be right.
TEST(CudaLayerNorm, MisalignedRowsTakeTheElementPath) {
  TG_REQUIRE_GPU();
  Generator gen(503);
  const int64_t N = 9, C = 384;
  for (DType dtype : test::cuda_float_dtypes()) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor x = test::rounded_randn({N, C}, gen, dtype);
    Tensor ref = Tensor::empty({N, C}), m = Tensor::empty({N}), r = Tensor::empty({N});
    ops::layernorm_forward(ref, m, r, x, Tensor(), Tensor(), 1e-5f);
    Tensor storage = test::poisoned({N * C + 1}, dtype);
    Tensor xg = storage.narrow(0, 1, N * C).view({N, C});
    xg.copy_(test::to_device(x, dtype));
    Tensor out = test::poisoned({N, C}, dtype), mg = test::poisoned({N}, DType::F32), rg = test::poisoned({N}, DType::F32);
    ops::layernorm_forward(out, mg, rg, xg, Tensor(), Tensor(), 1e-5f);
    EXPECT_LT(test::rel_error(out, ref), rounded_tolerance(dtype));
    EXPECT_TRUE(test::elementwise_close(out, ref, forward_bounds(dtype, x, Tensor(), Tensor(), ref)));
  }
}

// residual = a + b is what the composition's add kernel stores (the f32 sum rounded once to the
// dtype): bit for bit. out = layernorm of that rounded residual, with the forward's tolerance.
TEST(CudaLayerNorm, AddLayerNormMatchesCpuComposition) {
  TG_REQUIRE_GPU();
  Generator gen(504);
  for (DType dtype : test::cuda_float_dtypes()) {
    for (Sizes s : kSizes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
      Tensor a = test::rounded_randn({s.N, s.C}, gen, dtype), b = test::rounded_randn({s.N, s.C}, gen, dtype, 0.5f);
      Tensor w = test::rounded_randn({s.C}, gen, dtype), bias = test::rounded_randn({s.C}, gen, dtype);
      Tensor sum = Tensor::empty({s.N, s.C}), ref = Tensor::empty({s.N, s.C});
      Tensor ref_mean = Tensor::empty(rows_of(s.N)), ref_rstd = Tensor::empty(rows_of(s.N));
      ops::add_layernorm(sum, ref, ref_mean, ref_rstd, a, b, w, bias, 1e-5f);  // the CPU composition, f32
      Tensor ref_residual = sum.to(dtype).to(DType::F32);                  // what the dtype's add stores
      ops::layernorm_forward(ref, ref_mean, ref_rstd, ref_residual, w, bias, 1e-5f);

      Tensor residual = test::poisoned({s.N, s.C}, dtype), out = test::poisoned({s.N, s.C}, dtype);
      Tensor mean = test::poisoned(rows_of(s.N), DType::F32), rstd = test::poisoned(rows_of(s.N), DType::F32);
      ops::add_layernorm(residual, out, mean, rstd, test::to_device(a, dtype), test::to_device(b, dtype),
                         test::to_device(w, dtype), test::to_device(bias, dtype), 1e-5f);
      EXPECT_EQ(residual.to_vector(), ref_residual.to_vector());
      EXPECT_LT(test::rel_error(out, ref), rounded_tolerance(dtype));
      EXPECT_LT(test::rel_error(mean, ref_mean), kF32Tolerance);
      EXPECT_LT(test::rel_error(rstd, ref_rstd), kF32Tolerance);
      EXPECT_TRUE(test::elementwise_close(out, ref, forward_bounds(dtype, ref_residual, w, bias, ref)));
      EXPECT_TRUE(test::elementwise_close(mean, ref_mean, mean_bounds(ref_residual)));
      EXPECT_TRUE(test::elementwise_close(rstd, ref_rstd, rstd_tolerance(s.C)));
    }
  }
}

// Backward with every gradient buffer pre-filled with random values on both sides (the kernels
// must add, not write). mean and rstd come from the CPU forward and go to both. Each gradient is
// rounded once, at the end, on the GPU: the forward's rounded tolerance.
TEST(CudaLayerNorm, BackwardAccumulatesAndMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(505);
  std::vector<Sizes> sizes = kSizes;
  sizes.push_back({65, 6001});   // partial rows past the shared-memory limit: accumulated in scratch
  sizes.push_back({65, 6144});   // the same with vector loads (C a multiple of 8)
  sizes.push_back({3001, 768});  // many rows per block (N > the backward's 1024 row blocks)
  for (DType dtype : test::cuda_float_dtypes()) {
    for (Sizes s : sizes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
      Tensor x = test::rounded_randn({s.N, s.C}, gen, dtype), w = test::rounded_randn({s.C}, gen, dtype);
      Tensor dout = test::rounded_randn({s.N, s.C}, gen, dtype);
      Tensor y = Tensor::empty({s.N, s.C}), mean = Tensor::empty(rows_of(s.N)), rstd = Tensor::empty(rows_of(s.N));
      ops::layernorm_forward(y, mean, rstd, x, w, Tensor(), 1e-5f);
      Tensor dx = test::rounded_randn({s.N, s.C}, gen, dtype), dw = test::rounded_randn({s.C}, gen, dtype),
             db = test::rounded_randn({s.C}, gen, dtype);
      Tensor dxg = test::to_device(dx, dtype), dwg = test::to_device(dw, dtype), dbg = test::to_device(db, dtype);
      const Tensor dx0 = dx.clone(), dw0 = dw.clone(), db0 = db.clone();
      ops::layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
      ops::layernorm_backward(dxg, dwg, dbg, test::to_device(dout, dtype), test::to_device(x, dtype),
                              test::to_device(w, dtype), mean.to(test::gpu()), rstd.to(test::gpu()));
      EXPECT_LT(test::rel_error(dxg, dx), rounded_tolerance(dtype));
      EXPECT_LT(test::rel_error(dwg, dw), rounded_tolerance(dtype));
      EXPECT_LT(test::rel_error(dbg, db), rounded_tolerance(dtype));
      const GradBounds b = backward_bounds(dtype, x, w, dout, mean, rstd, dx0, dw0, db0, dx, dw, db);
      EXPECT_TRUE(test::elementwise_close(dxg, dx, b.dx));
      EXPECT_TRUE(test::elementwise_close(dwg, dw, b.dw));
      EXPECT_TRUE(test::elementwise_close(dbg, db, b.db));
    }
  }
}

// Only some gradients wanted, and no weight: the null-pointer paths of the backward.
TEST(CudaLayerNorm, BackwardPartialGradients) {
  TG_REQUIRE_GPU();
  Generator gen(506);
  const int64_t N = 70, C = 33;
  for (DType dtype : test::cuda_float_dtypes()) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor x = test::rounded_randn({N, C}, gen, dtype), dout = test::rounded_randn({N, C}, gen, dtype);
    Tensor y = Tensor::empty({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
    ops::layernorm_forward(y, mean, rstd, x, Tensor(), Tensor(), 1e-5f);
    Tensor meang = mean.to(test::gpu()), rstdg = rstd.to(test::gpu());
    Tensor xg = test::to_device(x, dtype), doutg = test::to_device(dout, dtype);
    // dx only.
    Tensor dx = test::rounded_randn({N, C}, gen, dtype), none;
    Tensor dxg = test::to_device(dx, dtype);
    const Tensor dx0 = dx.clone();
    ops::layernorm_backward(dx, none, none, dout, x, Tensor(), mean, rstd);
    ops::layernorm_backward(dxg, none, none, doutg, xg, Tensor(), meang, rstdg);
    EXPECT_LT(test::rel_error(dxg, dx), rounded_tolerance(dtype));
    EXPECT_TRUE(test::elementwise_close(
        dxg, dx, backward_bounds(dtype, x, Tensor(), dout, mean, rstd, dx0, none, none, dx, none, none).dx));
    // dbias only.
    Tensor db = test::rounded_randn({C}, gen, dtype);
    Tensor dbg = test::to_device(db, dtype);
    const Tensor db0 = db.clone();
    ops::layernorm_backward(none, none, db, dout, x, Tensor(), mean, rstd);
    ops::layernorm_backward(none, none, dbg, doutg, xg, Tensor(), meang, rstdg);
    EXPECT_LT(test::rel_error(dbg, db), rounded_tolerance(dtype));
    EXPECT_TRUE(test::elementwise_close(
        dbg, db, backward_bounds(dtype, x, Tensor(), dout, mean, rstd, none, none, db0, none, none, db).db));
  }
}

// Same inputs twice: bit-identical gradients (no atomics; fixed-order sums).
TEST(CudaLayerNorm, BackwardIsDeterministic) {
  TG_REQUIRE_GPU();
  Generator gen(507);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (Sizes s : std::vector<Sizes>{{4099, 768}, {1031, 769}}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " N=" + std::to_string(s.N) + " C=" + std::to_string(s.C));
      Tensor x = test::to_device(test::rounded_randn({s.N, s.C}, gen, dtype), dtype);
      Tensor w = test::to_device(test::rounded_randn({s.C}, gen, dtype), dtype);
      Tensor dout = test::to_device(test::rounded_randn({s.N, s.C}, gen, dtype), dtype);
      Tensor y = test::poisoned({s.N, s.C}, dtype);
      Tensor mean = test::poisoned({s.N}, DType::F32), rstd = test::poisoned({s.N}, DType::F32);
      ops::layernorm_forward(y, mean, rstd, x, w, Tensor(), 1e-5f);
      auto run = [&] {
        Tensor dx = Tensor::zeros({s.N, s.C}, dtype, test::gpu()), dw = Tensor::zeros({s.C}, dtype, test::gpu()),
               db = Tensor::zeros({s.C}, dtype, test::gpu());
        ops::layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
        std::vector<float> all = dx.to_vector(), wv = dw.to_vector(), bv = db.to_vector();
        all.insert(all.end(), wv.begin(), wv.end());
        all.insert(all.end(), bv.begin(), bv.end());
        return all;
      };
      std::vector<float> first = run();
      EXPECT_EQ(run(), first);
    }
  }
}

// The differentiable function on the GPU: output and gradients in x's dtype.
TEST(CudaLayerNorm, AutogradKeepsTheDtype) {
  TG_REQUIRE_GPU();
  Generator gen(508);
  Tensor x = test::to_device(test::rounded_randn({3, 40}, gen, DType::BF16), DType::BF16).requires_grad_();
  Tensor w = test::to_device(test::rounded_randn({40}, gen, DType::BF16), DType::BF16).requires_grad_();
  Tensor b = test::to_device(test::rounded_randn({40}, gen, DType::BF16), DType::BF16).requires_grad_();
  Tensor y = layernorm(x, w, b);
  EXPECT_EQ(y.dtype(), DType::BF16);
  EXPECT_TRUE(y.device().is_cuda());
  backward(y, Tensor::ones({3, 40}, DType::BF16, test::gpu()));
  EXPECT_EQ(x.grad().dtype(), DType::BF16);
  EXPECT_EQ(w.grad().dtype(), DType::BF16);
  // d/db of sum(y) is N for every column; d/dx of sum over a normalised row is 0 up to rounding.
  for (float v : b.grad().to_vector()) EXPECT_EQ(v, 3.0f);
}

// ---- CPU-runnable ------------------------------------------------------------------------------

// Half precision runs on the CPU too (tests/test_half_ops.cpp); mixed dtypes are refused by name.
TEST(CudaLayerNorm, MixedDtypesAreAClearError) {
  Generator gen(1);
  Tensor xf = Tensor::randn({2, 4}, &gen);
  EXPECT_ERROR_MENTIONS(layernorm(xf, Tensor::randn({4}, &gen).to(DType::F16), Tensor()), "layernorm", "weight", "f16", "f32");
  EXPECT_ERROR_MENTIONS(layernorm(xf.to(DType::I32), Tensor(), Tensor()), "layernorm", "x", "i32", "f32, bf16 or f16");
}

// On the CPU add_layernorm is one pass per row, bit for bit the composition; its arguments are
// checked like the forward's.
TEST(CudaLayerNorm, AddLayerNormOnTheCpu) {
  Generator gen(509);
  Tensor a = Tensor::randn({5, 7}, &gen), b = Tensor::randn({5, 7}, &gen), w = Tensor::randn({7}, &gen);
  Tensor residual = Tensor::empty({5, 7}), out = Tensor::empty({5, 7}), mean = Tensor::empty({5}), rstd = Tensor::empty({5});
  ops::add_layernorm(residual, out, mean, rstd, a, b, w, Tensor(), 1e-5f);
  std::vector<float> av = a.to_vector(), bv = b.to_vector(), rv = residual.to_vector();
  for (size_t i = 0; i < av.size(); i++) EXPECT_EQ(rv[i], av[i] + bv[i]);
  Tensor sum = Tensor::from_vector(rv, {5, 7}), ref = Tensor::empty({5, 7});
  ops::layernorm_forward(ref, mean, rstd, sum, w, Tensor(), 1e-5f);
  ops::add_layernorm(residual, out, mean, rstd, a, b, w, Tensor(), 1e-5f);
  EXPECT_EQ(out.to_vector(), ref.to_vector());
  Tensor wrong = Tensor::randn({5, 6}, &gen);
  EXPECT_ERROR_MENTIONS(ops::add_layernorm(residual, out, mean, rstd, a, wrong, w, Tensor(), 1e-5f), "layernorm", "b",
                        "(5, 6)", "(5, 7)");
  EXPECT_ERROR_MENTIONS(ops::add_layernorm(residual, out, mean, rstd, a, b.to(DType::BF16), w, Tensor(), 1e-5f),
                        "layernorm", "b", "bf16");
}
