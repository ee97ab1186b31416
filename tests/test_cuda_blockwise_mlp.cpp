// The blockwise MLP (ops/blockwise_mlp.h, behind autograd/functions/blockwise_mlp.h) on CUDA
// against the CPU, f32 and bf16: the output, dx and every parameter gradient, element-wise. On
// CUDA the chunks run one after another on the stream through the same fronts (layernorm, linear
// with its GELU and residual epilogues, matmul, gelu_backward, column sums), so this checks those
// on row slices and the accumulation across chunks: chunks of 5 rows, the last of 3, forward and
// backward (the ops entries, called at that chunk; the autograd node's backward would run one
// chunk of at least 512 rows). Skips without a GPU.
//
// Tolerance, element-wise |gpu - cpu| <= atol + rtol |cpu|, from worst-case error analysis:
//   Every value is a chain of at most K = C + H + R + 16 roundings (LayerNorm's C-term sums, the
//   C-term c_fc and H-term c_proj dot products, the R-term weight-gradient sums, and a few
//   elementwise steps, the GELU's tanh counted as 8), each side within K u S of the exact value,
//   S bounding the sum of |terms| of that output (below, from the inputs' largest magnitudes).
//   An error in an input of a later step is amplified by at most A = (1 + 1.13 H max|Wp|)
//   (1 + C max|Wf|): c_fc sums C terms of the normalised rows, the GELU's slope is at most 1.13 and
//   c_proj sums H terms. So atol = 2 K u S A, u = 2^-24. In bf16 each op's output is rounded once
//   (u_b = 2^-9), at most 8 such roundings along a chain, which may fall on either side on the two
//   devices: 2 (8 u_b + K u) S A. rtol 1e-5 (f32) covers the GPU's tanhf and rsqrtf, a few ulp
//   where the CPU's are within 2 (test_cuda_activation.cpp, test_cuda_layernorm.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ops/blockwise_mlp.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t.to_vector()) m = std::max(m, static_cast<double>(std::fabs(v)));
  return m;
}

// The largest 1/sqrt(var + eps) over x's rows (R, C), in double: LayerNorm's backward scales by it.
double max_rstd(const Tensor& x, double eps) {
  const std::vector<float> v = x.to_vector();
  const int64_t R = x.size(0), C = x.size(1);
  double most = 0;
  for (int64_t r = 0; r < R; r++) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; c++) mean += v[r * C + c];
    mean /= static_cast<double>(C);
    for (int64_t c = 0; c < C; c++) var += (v[r * C + c] - mean) * (v[r * C + c] - mean);
    most = std::max(most, 1.0 / std::sqrt(var / static_cast<double>(C) + eps));
  }
  return most;
}

}  // namespace

TEST(CudaBlockwiseMlp, MatchesTheCpu) {
  TG_REQUIRE_GPU();
  const int64_t R = 23, C = 24, H = 96, chunk = 5;  // chunks of 5, the last of 3
  const float eps = 1e-5f;
  for (DType dtype : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Generator gen(97);
    const float wf_scale = 1.0f / std::sqrt(static_cast<float>(C)), wp_scale = 1.0f / std::sqrt(static_cast<float>(H));
    // Values representable in the dtype, so that both sides start from the same numbers.
    const Tensor x = test::rounded_randn({R, C}, gen, dtype), dy = test::rounded_randn({R, C}, gen, dtype);
    const Tensor ln_w = test::rounded_randn({C}, gen, dtype, 0.5f), ln_b = test::rounded_randn({C}, gen, dtype, 0.1f);
    const Tensor fc_w = test::rounded_randn({H, C}, gen, dtype, wf_scale);
    const Tensor fc_b = test::rounded_randn({H}, gen, dtype, 0.1f);
    const Tensor proj_w = test::rounded_randn({C, H}, gen, dtype, wp_scale);
    const Tensor proj_b = test::rounded_randn({C}, gen, dtype, 0.1f);

    // out, then dx and the six parameter gradients, on the CPU [0] and the GPU [1].
    std::vector<Tensor> results[2];
    for (int side = 0; side < 2; side++) {
      const Device device = side == 0 ? Device::cpu() : test::gpu();
      auto on = [&](const Tensor& t) { return t.to(dtype).to(device); };
      ops::MlpParams p;
      p.ln_weight = on(ln_w), p.ln_bias = on(ln_b), p.ln_eps = eps;
      p.fc_weight = on(fc_w), p.fc_bias = on(fc_b), p.proj_weight = on(proj_w), p.proj_bias = on(proj_b);
      const Tensor xd = on(x), dyd = on(dy);
      Tensor out = Tensor::empty({R, C}, dtype, device);
      ops::blockwise_mlp_forward(out, xd, p, chunk);
      ops::MlpGrads g;
      g.x = Tensor::zeros({R, C}, dtype, device);
      g.ln_weight = Tensor::zeros({C}, dtype, device), g.ln_bias = Tensor::zeros({C}, dtype, device);
      g.fc_weight = Tensor::zeros({H, C}, dtype, device), g.fc_bias = Tensor::zeros({H}, dtype, device);
      g.proj_weight = Tensor::zeros({C, H}, dtype, device), g.proj_bias = Tensor::zeros({C}, dtype, device);
      ops::blockwise_mlp_backward(g, dyd, xd, p, chunk);
      for (const Tensor& t : {out, g.x, g.ln_weight, g.ln_bias, g.fc_weight, g.fc_bias, g.proj_weight, g.proj_bias})
        results[side].push_back(t.to(Device::cpu()).to(DType::F32));
    }

    // The magnitudes: normalised rows |n| <= sqrt(C) max|ln_w| + max|ln_b|; pre-activation and
    // hidden |v|, |g| <= C N max|Wf| + max|bf|; d hidden <= C max|dy| max|Wp|, d pre <= 1.13 of
    // it; d normalised <= H Dpre max|Wf|; LayerNorm's dx <= 3 max|ln_w| rstd Dn per term of C.
    const double N = std::sqrt(static_cast<double>(C)) * max_abs(ln_w) + max_abs(ln_b);
    const double V = static_cast<double>(C) * N * max_abs(fc_w) + max_abs(fc_b);
    const double Dh = static_cast<double>(C) * max_abs(dy) * max_abs(proj_w), Dpre = 1.13 * Dh;
    const double Dn = static_cast<double>(H) * Dpre * max_abs(fc_w);
    const double rows = static_cast<double>(R);
    const double S[8] = {
        max_abs(x) + static_cast<double>(H) * V * max_abs(proj_w) + max_abs(proj_b),                 // out
        max_abs(dy) + 3.0 * max_abs(ln_w) * max_rstd(x, eps) * Dn * static_cast<double>(C),          // dx
        rows * Dn * std::sqrt(static_cast<double>(C)),                                               // d ln_w
        rows * Dn,                                                                                   // d ln_b
        rows * Dpre * N,                                                                             // d fc_w
        rows * Dpre,                                                                                 // d fc_b
        rows * max_abs(dy) * V,                                                                      // d proj_w
        rows * max_abs(dy)};                                                                         // d proj_b
    const char* names[8] = {"out", "dx", "d ln_weight", "d ln_bias", "d fc_weight", "d fc_bias", "d proj_weight",
                            "d proj_bias"};
    const double u = std::ldexp(1.0, -24), K = static_cast<double>(C + H + R + 16);
    const double A = (1.0 + 1.13 * static_cast<double>(H) * max_abs(proj_w)) *
                     (1.0 + static_cast<double>(C) * max_abs(fc_w));
    const double per_value = dtype == DType::F32 ? K * u : 8.0 * test::unit_roundoff(dtype) + K * u;
    for (int k = 0; k < 8; k++) {
      test::Tolerance tol;
      tol.rtol = dtype == DType::F32 ? 1e-5 : 2.0 * test::unit_roundoff(dtype);
      tol.atol = 2.0 * per_value * S[k] * A;
      EXPECT_TRUE(test::elementwise_close(results[1][k], results[0][k], tol)) << names[k];
    }
  }
}
