#include "ops/cpu/activation.h"

#include "ops/cpu/fast_math.h"
#include "ops/cpu/gelu_math.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// See ops/cpu/elementwise.cpp: below this many elements one thread is faster.
static constexpr int64_t kParallelMin = 1 << 15;
using gelu_math::clamp80;
using gelu_math::gelu_arg;
using gelu_math::kGeluCubic;
using gelu_math::kSqrt2OverPi;

// GELU's formula and its range rules: ops/cpu/gelu_math.h.
void gelu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) out[i] = gelu_math::gelu(inp[i]);
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

// Sigmoid and SiLU go through e = exp(-|x|), in [0, 1], which never overflows: with
// t = 1 / (1 + e) = sigmoid(|x|),
//   sigmoid(x) = t      and sigmoid(-x) = e t   for x >= 0,
//   sigmoid(x) = e t    and sigmoid(-x) = t     for x < 0.
// So both sigmoid(x) and 1 - sigmoid(x) come out with full relative precision (no subtraction
// from 1), there is never inf / inf, and the far tail keeps its subnormals: sigmoid(-100) is
// 3.7e-44, not 0 and not NaN. Past |x| = 104, e is 0 and everything is settled in float.
static inline void sigmoid_pair(float x, float& s, float& c) {  // s = sigmoid(x), c = sigmoid(-x)
  float e = fast_exp_nonpositive(-std::fabs(x));
  float t = 1.0f / (1.0f + e);
  s = x >= 0.0f ? t : e * t;
  c = x >= 0.0f ? e * t : t;
}

void sigmoid_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    float s, c;
    sigmoid_pair(inp[i], s, c);
    out[i] = s;
  }
}

// From the input, not the output: sigmoid' = s (1 - s) computed as s * c keeps its relative
// precision where s rounds to 1 (x > 17, where 1 - out is 0 but the slope is e^-x), and in half
// precision on CUDA the saved output would carry its rounding into the slope. The exp it costs is
// hidden behind the memory traffic, which is the same either way.
void sigmoid_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    float s, c;
    sigmoid_pair(inp[i], s, c);
    dinp[i] += dout[i] * (s * c);
  }
}

// silu(x) = x s. Where s is 0 (x < -104) the product is written as 0, so -inf gives the limit 0 and
// not -inf * 0 (the true value there is below 1e-43 in magnitude).
void silu_forward(float* out, const float* inp, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    float x = inp[i], s, c;
    sigmoid_pair(x, s, c);
    out[i] = s == 0.0f ? 0.0f : x * s;
  }
}

// silu'(x) = s + x s (1 - s) = s (1 + x c). Past |x| = 104 it is 1 or 0, written as such so that
// x = +-inf gives the limits instead of inf * 0.
void silu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    float x = inp[i], s, c;
    sigmoid_pair(x, s, c);
    float grad = s * (1.0f + x * c);
    grad = c == 0.0f ? 1.0f : (s == 0.0f ? 0.0f : grad);
    dinp[i] += dout[i] * grad;
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
