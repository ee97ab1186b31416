// GELU of one value, inline, for the kernels that apply it inside their own loops: the activation
// kernels (ops/cpu/activation.cpp) and the half-precision linear epilogue (ops/cpu/gemm.cpp), which
// runs it chunk by chunk inside its own threaded loop, where calling gelu_forward (a parallel
// region of its own, nested) would cost more than the arithmetic.
//
// GELU is computed in its sigmoid form: 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)). The two agree
// exactly in real arithmetic, but the tanh form cancels catastrophically for negative inputs
// (1 + tanh(u) with tanh(u) near -1), while the sigmoid form keeps full relative precision there.
//
// Past |2u| = 80 the answer is settled in float: for 2u > 80, gelu(x) = x and gelu'(x) = 1; for
// 2u < -80 (x < -9.7), |gelu(x)| < 2e-34 and gelu'(x) < 1e-32, written as 0. Returning those
// outright matters for huge |x|, where x^3 overflows and x (or x^3) times a tiny sigmoid would
// otherwise come out large. Inside the range the check-free exp applies.
#pragma once
#include "ops/cpu/fast_math.h"

namespace tg::cpu::gelu_math {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

inline float gelu_arg(float x) { return -2.0f * kSqrt2OverPi * (x + kGeluCubic * x * x * x); }
inline float clamp80(float arg) { return arg > 80.0f ? 80.0f : (arg < -80.0f ? -80.0f : arg); }

// Branch-free, so loops over it vectorise under `#pragma omp simd`.
inline float gelu(float x) {
  float arg = gelu_arg(x);
  float y = x / (1.0f + fast_exp_in_range(clamp80(arg)));
  return arg > 80.0f ? 0.0f : y;
}

}  // namespace tg::cpu::gelu_math
