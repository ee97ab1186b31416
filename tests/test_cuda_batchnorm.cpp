// BatchNorm on CUDA against the CPU kernels (ops/cpu/batchnorm.h), in f32, bf16 and f16, over NHWC
// maps with C not a multiple of 8 and row counts M that give one, a few and many chunks: training
// forward (statistics, running statistics, output, fused ReLU), evaluation forward, and backward
// (dx, dweight, dbias added into pre-filled buffers), outputs poisoned with NaN.
//
// Element-wise bounds, u = 2^-24, from both sides' errors (the inputs are identical: the CPU's f32
// values rounded to the dtype). Per channel, with d = x - x[0] (the shift both sides use):
//   Each side sums blocks of 32 rows in f32 and the blocks in f64: sum d within 33 u sum|d| (31
//   additions, the rounding of d, the f64 and f32 conversions), sum d^2 within 35 u sum d^2. So the
//   sides' S = sum d differ by eS = 66 u sum|d|, their Q = sum d^2 by eQ = 70 u sum d^2.
//   mean = x0 + S / M: eS / M + 2 u |mean| (each side rounds it to f32 once).
//   var = (Q - S^2 / M) / M: dvar = (eQ + (2 |S| eS + eS^2) / M) / M; rstd = (var + eps)^-1/2 differs
//   by a relative dvar / (2 (var + eps)) + 2 u (one f32 rounding a side).
//   y = fma(x - mean, w rstd, b): |w rstd| dmean + |x - mean| |w rstd| (drstd + 4 u) + 2 u |y|.
//   running statistics: momentum times the above (var times M / (M - 1)) + 2 u of the result.
// Backward, mean and rstd given (identical on both sides, so the ReLU masks agree): with
// g = dout (masked), Ag = sum|g|, Agx = sum |g| |x - mean|, each side's sums are within 32 u Ag and
// 34 u Agx: dbias differs by 64 u Ag + 4 u |sum g| + 2 u |dbias|, dweight by rstd (68 u Agx) +
// 4 u |dweight term| + 2 u |dweight|, dx by |w rstd| (dg_shift + |x - mean| dx_coeff) + 12 u |w rstd|
// (|g| + |g_shift| + |x - mean| |x_coeff|) + 2 u |dx|. The GPU then rounds to the dtype:
// + R (|ref| + d) + the subnormal half-spacing (finish()).
// Evaluation forward: mean and rstd come from the running statistics in f64 on both sides and the
// output is the same fma: bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ops/batchnorm.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

const double u = std::ldexp(1.0, -24);

double finish(DType dtype, double d, double ref) {
  const double R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  return d + R * (std::fabs(ref) + d) + test::subnormal_half_spacing(dtype);
}
double finish_f32(double d) { return d + test::subnormal_half_spacing(DType::F32); }

// (N,H,W,C) maps: M = 70 (one chunk), 396 (6 chunks), 2048 (32 chunks); C = 13, 5, 40.
std::vector<Shape> map_shapes() { return {{2, 5, 7, 13}, {4, 9, 11, 5}, {8, 16, 16, 40}}; }

// t + v, element by element (an f32 CPU tensor).
Tensor plus(Tensor t, float v) {
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); i++) p[i] += v;
  return t;
}

struct ChannelSums {
  std::vector<double> abs_d, sq_d, S, mean, var;
};
ChannelSums channel_sums(const Tensor& x_t) {
  const std::vector<float> x = x_t.to_vector();
  const int64_t C = x_t.size(-1), M = x_t.numel() / C;
  ChannelSums r;
  for (int64_t c = 0; c < C; c++) {
    double a = 0, q = 0, s = 0;
    for (int64_t m = 0; m < M; m++) {
      const double d = static_cast<double>(x[m * C + c]) - x[c];
      a += std::fabs(d), q += d * d, s += d;
    }
    r.abs_d.push_back(a), r.sq_d.push_back(q), r.S.push_back(s);
    r.mean.push_back(x[c] + s / M);
    r.var.push_back(std::max(0.0, (q - s * s / M) / M));
  }
  return r;
}

struct TrainRefs {
  Tensor out, mean, rstd, running_mean, running_var;
};

}  // namespace

TEST(CudaBatchNorm, TrainingForwardMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(21);
  const float momentum = 0.1f, eps = 1e-5f;
  for (DType dtype : test::cuda_float_dtypes())
    for (const Shape& shape : map_shapes())
      for (bool relu : {false, true}) {
        const int64_t C = shape[3], M = shape[0] * shape[1] * shape[2];
        // An offset mean (3) so the shifted sums matter.
        Tensor x = plus(test::rounded_randn(shape, gen, dtype, 2.0f), 3.0f).to(dtype).to(DType::F32);
        Tensor w = test::rounded_randn({C}, gen, dtype), b = test::rounded_randn({C}, gen, dtype);
        Tensor rm0 = Tensor::randn({C}, &gen), rv0 = plus(Tensor::rand({C}, &gen), 0.5f);
        TrainRefs ref{Tensor::empty(shape), Tensor::empty({C}), Tensor::empty({C}), rm0.clone(), rv0.clone()};
        ops::batchnorm_forward(ref.out, ref.mean, ref.rstd, x, w, b, ref.running_mean, ref.running_var, true, momentum,
                               eps, relu);

        Tensor out = test::poisoned(shape, dtype), mean = test::poisoned({C}, DType::F32),
               rstd = test::poisoned({C}, DType::F32);
        Tensor rm = rm0.to(test::gpu()), rv = rv0.to(test::gpu());
        ops::batchnorm_forward(out, mean, rstd, test::to_device(x, dtype), test::to_device(w, dtype),
                               test::to_device(b, dtype), rm, rv, true, momentum, eps, relu);

        const ChannelSums cs = channel_sums(x);
        const std::vector<float> xs = x.to_vector(), ws = w.to_vector(), ys = ref.out.to_vector();
        const std::vector<float> rmv = ref.running_mean.to_vector(), rvv = ref.running_var.to_vector();
        std::vector<double> b_mean(C), b_rstd(C), b_rm(C), b_rv(C), b_out(M * C), dmean(C), drstd(C);
        for (int64_t c = 0; c < C; c++) {
          const double eS = 66 * u * cs.abs_d[c], eQ = 70 * u * cs.sq_d[c];
          const double dvar = (eQ + (2 * std::fabs(cs.S[c]) * eS + eS * eS) / M) / M;
          dmean[c] = eS / M + 2 * u * std::fabs(cs.mean[c]);
          drstd[c] = dvar / (2 * (cs.var[c] + eps)) + 2 * u;
          const double rstd_c = 1 / std::sqrt(cs.var[c] + eps);
          b_mean[c] = finish_f32(dmean[c]);
          b_rstd[c] = finish_f32(drstd[c] * rstd_c);
          b_rm[c] = finish_f32(momentum * dmean[c] + 2 * u * std::fabs(rmv[c]));
          b_rv[c] = finish_f32(momentum * dvar * M / (M - 1) + 2 * u * std::fabs(rvv[c]));
          const double scale = std::fabs(ws[c]) * rstd_c;
          for (int64_t m = 0; m < M; m++) {
            const double centered = std::fabs(xs[m * C + c] - cs.mean[c]);
            const double d = scale * dmean[c] + centered * scale * (drstd[c] + 4 * u) + 2 * u * std::fabs(ys[m * C + c]);
            b_out[m * C + c] = finish(dtype, d, ys[m * C + c]);
          }
        }
        const std::string what = std::string(dtype_name(dtype)) + " " + shape_str(shape) + (relu ? " relu" : "");
        EXPECT_TRUE(test::elementwise_close(mean, ref.mean, b_mean)) << "mean " << what;
        EXPECT_TRUE(test::elementwise_close(rstd, ref.rstd, b_rstd)) << "rstd " << what;
        EXPECT_TRUE(test::elementwise_close(rm, ref.running_mean, b_rm)) << "running_mean " << what;
        EXPECT_TRUE(test::elementwise_close(rv, ref.running_var, b_rv)) << "running_var " << what;
        EXPECT_TRUE(test::elementwise_close(out, ref.out, b_out)) << "out " << what;
      }
}

TEST(CudaBatchNorm, EvaluationForwardMatchesCpuBitForBit) {
  TG_REQUIRE_GPU();
  Generator gen(22);
  for (DType dtype : test::cuda_float_dtypes())
    for (bool relu : {false, true}) {
      const Shape shape = {3, 5, 7, 13};
      const int64_t C = 13;
      Tensor x = test::rounded_randn(shape, gen, dtype);
      Tensor w = test::rounded_randn({C}, gen, dtype), b = test::rounded_randn({C}, gen, dtype);
      Tensor rm = Tensor::randn({C}, &gen), rv = plus(Tensor::rand({C}, &gen), 0.5f);
      Tensor ref = Tensor::empty(shape), ref_mean = Tensor::empty({C}), ref_rstd = Tensor::empty({C});
      ops::batchnorm_forward(ref, ref_mean, ref_rstd, x, w, b, rm, rv, false, 0.1f, 1e-5f, relu);
      Tensor out = test::poisoned(shape, dtype), mean = test::poisoned({C}, DType::F32),
             rstd = test::poisoned({C}, DType::F32);
      Tensor rmg = rm.to(test::gpu()), rvg = rv.to(test::gpu());
      ops::batchnorm_forward(out, mean, rstd, test::to_device(x, dtype), test::to_device(w, dtype),
                             test::to_device(b, dtype), rmg, rvg, false, 0.1f, 1e-5f, relu);
      EXPECT_TRUE(test::same_bits(out, ref.to(dtype))) << dtype_name(dtype);
      EXPECT_TRUE(test::same_bits(mean, ref_mean)) << dtype_name(dtype);
      EXPECT_TRUE(test::same_bits(rstd, ref_rstd)) << dtype_name(dtype);
    }
}

TEST(CudaBatchNorm, BackwardMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(23);
  for (DType dtype : test::cuda_float_dtypes())
    for (const Shape& shape : map_shapes())
      for (bool training : {true, false})
        for (bool relu : {false, true}) {
          const int64_t C = shape[3], M = shape[0] * shape[1] * shape[2];
          Tensor x = test::rounded_randn(shape, gen, dtype), dout = test::rounded_randn(shape, gen, dtype);
          Tensor w = test::rounded_randn({C}, gen, dtype), b = test::rounded_randn({C}, gen, dtype);
          // The forward's statistics, from the CPU, given to both backwards.
          Tensor y = Tensor::empty(shape), mean = Tensor::empty({C}), rstd = Tensor::empty({C});
          Tensor rm = Tensor::zeros({C}), rv = Tensor::ones({C});
          ops::batchnorm_forward(y, mean, rstd, x, w, b, rm, rv, training, 0.1f, 1e-5f, relu);
          Tensor dx0 = test::rounded_randn(shape, gen, dtype), dw0 = test::rounded_randn({C}, gen, dtype),
                 db0 = test::rounded_randn({C}, gen, dtype);
          Tensor dx_ref = dx0.clone(), dw_ref = dw0.clone(), db_ref = db0.clone();
          ops::batchnorm_backward(dx_ref, dw_ref, db_ref, dout, x, w, b, mean, rstd, training, relu);
          Tensor dx = test::to_device(dx0, dtype), dw = test::to_device(dw0, dtype), db = test::to_device(db0, dtype);
          ops::batchnorm_backward(dx, dw, db, test::to_device(dout, dtype), test::to_device(x, dtype),
                                  test::to_device(w, dtype), test::to_device(b, dtype), mean.to(test::gpu()),
                                  rstd.to(test::gpu()), training, relu);

          const std::vector<float> xs = x.to_vector(), dys = dout.to_vector(), ws = w.to_vector(),
                                   bs = b.to_vector(), ms = mean.to_vector(), rs = rstd.to_vector();
          const std::vector<float> dxr = dx_ref.to_vector(), dwr = dw_ref.to_vector(), dbr = db_ref.to_vector();
          std::vector<double> b_dx(M * C), b_dw(C), b_db(C);
          for (int64_t c = 0; c < C; c++) {
            const double scale = static_cast<double>(ws[c]) * rs[c];
            double Ag = 0, Agx = 0, sg = 0, sgx = 0;
            std::vector<double> g(M);
            for (int64_t m = 0; m < M; m++) {
              const float z = std::fma(xs[m * C + c] - ms[c], ws[c] * rs[c], bs[c]);
              g[m] = relu && !(z > 0.0f) ? 0.0 : dys[m * C + c];
              const double centered = static_cast<double>(xs[m * C + c]) - ms[c];
              Ag += std::fabs(g[m]), Agx += std::fabs(g[m] * centered), sg += g[m], sgx += g[m] * centered;
            }
            b_db[c] = finish(dtype, 64 * u * Ag + 4 * u * std::fabs(sg) + 2 * u * std::fabs(dbr[c]), dbr[c]);
            b_dw[c] = finish(dtype, rs[c] * 68 * u * Agx + 4 * u * std::fabs(sgx * rs[c]) + 2 * u * std::fabs(dwr[c]),
                             dwr[c]);
            const double g_shift = training ? sg / M : 0, x_coeff = training ? double(rs[c]) * rs[c] * sgx / M : 0;
            const double dg_shift = training ? 64 * u * Ag / M + 2 * u * std::fabs(g_shift) : 0;
            const double dx_coeff = training ? double(rs[c]) * rs[c] * 68 * u * Agx / M + 2 * u * std::fabs(x_coeff) : 0;
            for (int64_t m = 0; m < M; m++) {
              const double centered = std::fabs(static_cast<double>(xs[m * C + c]) - ms[c]);
              const double terms = std::fabs(g[m]) + std::fabs(g_shift) + centered * std::fabs(x_coeff);
              const double d = std::fabs(scale) * (dg_shift + centered * dx_coeff) + 12 * u * std::fabs(scale) * terms +
                               2 * u * std::fabs(dxr[m * C + c]);
              b_dx[m * C + c] = finish(dtype, d, dxr[m * C + c]);
            }
          }
          const std::string what = std::string(dtype_name(dtype)) + " " + shape_str(shape) +
                                   (training ? " training" : " eval") + (relu ? " relu" : "");
          EXPECT_TRUE(test::elementwise_close(dx, dx_ref, b_dx)) << "dx " << what;
          EXPECT_TRUE(test::elementwise_close(dw, dw_ref, b_dw)) << "dweight " << what;
          EXPECT_TRUE(test::elementwise_close(db, db_ref, b_db)) << "dbias " << what;
        }
}

TEST(CudaBatchNorm, RunsAreBitIdentical) {
  TG_REQUIRE_GPU();
  Generator gen(24);
  const Shape shape = {16, 16, 16, 24};  // 4096 rows: 64 chunks
  for (DType dtype : test::cuda_float_dtypes()) {
    Tensor x = test::to_device(test::rounded_randn(shape, gen, dtype), dtype);
    Tensor dout = test::to_device(test::rounded_randn(shape, gen, dtype), dtype);
    Tensor w = Tensor::ones({24}, dtype, test::gpu()), b = Tensor::zeros({24}, dtype, test::gpu());
    Tensor outs[2], dxs[2], dws[2];
    for (int run = 0; run < 2; run++) {
      Tensor mean = Tensor::empty({24}, DType::F32, test::gpu()), rstd = Tensor::empty({24}, DType::F32, test::gpu());
      Tensor rm = Tensor::zeros({24}, DType::F32, test::gpu()), rv = Tensor::ones({24}, DType::F32, test::gpu());
      outs[run] = Tensor::empty(shape, dtype, test::gpu());
      ops::batchnorm_forward(outs[run], mean, rstd, x, w, b, rm, rv, true, 0.1f, 1e-5f, true);
      dxs[run] = Tensor::zeros(shape, dtype, test::gpu());
      dws[run] = Tensor::zeros({24}, dtype, test::gpu());
      Tensor db = Tensor::zeros({24}, dtype, test::gpu());
      ops::batchnorm_backward(dxs[run], dws[run], db, dout, x, w, b, mean, rstd, true, true);
    }
    EXPECT_TRUE(test::same_bits(outs[0], outs[1])) << dtype_name(dtype);
    EXPECT_TRUE(test::same_bits(dxs[0], dxs[1])) << dtype_name(dtype);
    EXPECT_TRUE(test::same_bits(dws[0], dws[1])) << dtype_name(dtype);
  }
}
