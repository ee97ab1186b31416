// The chunked output layer + loss (autograd/functions/linear_crossentropy.h) on CUDA against the
// CPU, f32: loss and the gradients of x, W and b, with a short last chunk, V odd and ignored
// targets. Skips without a GPU.
//
// Tolerance, element-wise |gpu - cpu| <= atol + rtol |cpu|:
//   rtol 1e-5: the exp of the softmax, __expf on the GPU, within 25 ulp (3e-6) where the CPU is
//     within 2 (test_cuda_crossentropy.cpp's derivation), and log of a sum that keeps it.
//   atol 2 K u S (1 + L): each side's f32 sums, along chains of at most K = C + V + N terms (a
//     logit's C-term dot product, the V-term log-sum-exp and dx sums, the N-term dW sums and the
//     mean), are within (K - 1) u sum|terms| of the exact value, so the two sides differ by twice
//     that. S bounds sum|terms| of the output: the loss's lse by L + log V, dx by 2 max|W| / count
//     (sum over v of |p - onehot| <= 2, over count), dW and db by max(|x|, 1) N / count. A logit
//     off by e moves each probability by e relative, so the gradients carry the logits' error too:
//     the factor (1 + L), L = C max|x| max|W| + max|b| bounding every |logit|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/linear_crossentropy.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

float max_abs(const Tensor& t) {
  float m = 0;
  for (float v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace

TEST(CudaLinearCrossEntropy, MatchesTheCpu) {
  TG_REQUIRE_GPU();
  const int64_t N = 37, C = 24, V = 51, chunk = 16;  // chunks of 16, 16 and 5
  Generator gen(98);
  Tensor x = test::rounded_randn({N, C}, gen, DType::F32, 0.5f), w = test::rounded_randn({V, C}, gen, DType::F32, 0.5f);
  Tensor b = test::rounded_randn({V}, gen, DType::F32, 0.5f);
  std::vector<int32_t> t(N);
  int64_t count = 0;
  for (int64_t i = 0; i < N; i++) {
    t[i] = i % 4 == 1 ? -1 : static_cast<int32_t>(gen.below(V));
    count += t[i] >= 0;
  }
  Tensor targets = Tensor::from_ints(t, {N});

  std::vector<Tensor> results[2];  // loss, dx, dW, db on the CPU and on the GPU
  for (int side = 0; side < 2; side++) {
    Device device = side == 0 ? Device::cpu() : test::gpu();
    Tensor xl = x.to(device).requires_grad_(true), wl = w.to(device).requires_grad_(true);
    Tensor bl = b.to(device).requires_grad_(true);
    Tensor loss = linear_cross_entropy(xl, wl, bl, targets.to(device), chunk);
    backward(loss);
    results[side] = {loss.to(Device::cpu()), xl.grad().to(Device::cpu()), wl.grad().to(Device::cpu()),
                     bl.grad().to(Device::cpu())};
  }

  const double u = std::ldexp(1.0, -24), K = static_cast<double>(C + V + N);
  const double L = static_cast<double>(C) * max_abs(x) * max_abs(w) + max_abs(b);
  const double per_count = static_cast<double>(N) / static_cast<double>(count);
  const double S[4] = {L + std::log(static_cast<double>(V)), 2.0 * max_abs(w) / static_cast<double>(count),
                       std::max(1.0f, max_abs(x)) * per_count, per_count};
  const char* names[4] = {"loss", "dx", "dW", "db"};
  for (int k = 0; k < 4; k++) {
    test::Tolerance tol;
    tol.rtol = 1e-5;
    tol.atol = 2.0 * K * u * S[k] * (1.0 + L);
    EXPECT_TRUE(test::elementwise_close(results[1][k], results[0][k], tol)) << names[k];
  }
}
