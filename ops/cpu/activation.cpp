#include "ops/cpu/activation.h"

#include "ops/cpu/fast_math.h"

namespace tg::cpu {

// See ops/cpu/elementwise.cpp: below this many elements one thread is faster.
static constexpr int64_t kParallelMin = 1 << 15;
static constexpr float kSqrt2OverPi = 0.7978845608028654f;
static constexpr float kGeluCubic = 0.044715f;

// GELU is computed in its sigmoid form: 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)). The two agree
// exactly in real arithmetic, but the tanh form cancels catastrophically for negative inputs
// (1 + tanh(u) with tanh(u) near -1), while the sigmoid form keeps full relative precision there.
//
// Past |2u| = 80 the answer is settled in float: for 2u > 80, gelu(x) = x and gelu'(x) = 1; for
// 2u < -80 (x < -9.7), |gelu(x)| < 2e-34 and gelu'(x) < 1e-32, written as 0. Returning those
// outright matters for huge |x|, where x^3 overflows and x (or x^3) times a tiny sigmoid would
// otherwise come out large. Inside the range the check-free exp applies.
static inline float gelu_arg(float x) { return -2.0f * kSqrt2OverPi * (x + kGeluCubic * x * x * x); }
static inline float clamp80(float arg) { return arg > 80.0f ? 80.0f : (arg < -80.0f ? -80.0f : arg); }

void gelu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    float x = inp[i];
    float arg = gelu_arg(x);
    float y = x / (1.0f + fast_exp_in_range(clamp80(arg)));
    out[i] = arg > 80.0f ? 0.0f : y;
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  // With s = sigmoid(2u) = 1 / (1 + e), e = exp(-2u):
  //   gelu'(x) = s + x * 2 s (1 - s) * u'(x),  u'(x) = sqrt(2/pi) (1 + 3 * 0.044715 x^2),
  // and 1 - s = e s is formed without the subtraction that would cancel when s is near 1.
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    float x = inp[i];
    float arg = gelu_arg(x);
    float e = fast_exp_in_range(clamp80(arg));
    float s = 1.0f / (1.0f + e);
    float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
    float grad = s * (1.0f + 2.0f * x * du * (e * s));
    grad = arg > 80.0f ? 0.0f : (arg < -80.0f ? 1.0f : grad);
    dinp[i] += dout[i] * grad;
  }
}

void relu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void relu_backward(float* dinp, const float* out, const float* dout, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    // Loaded unconditionally: `out > 0 ? dout[i] : 0` compiles to a merge-masked load that chains
    // each iteration to the last (see ops/cpu/dropout.cpp). The select keeps a NaN dout at 0 where
    // the unit is off, as PyTorch does.
    float g = dout[i];
    dinp[i] += out[i] > 0.0f ? g : 0.0f;
  }
}

void tanh_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) out[i] = fast_tanh(inp[i]);
}

void tanh_backward(float* dinp, const float* out, const float* dout, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

}  // namespace tg::cpu
