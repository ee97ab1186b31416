// Vectorizable exp and tanh for the elementwise kernels (GELU, tanh, softmax, log_softmax).
//
// libm's expf/tanhf are calls, so a loop that uses them runs one element at a time. These are
// branch-free inline versions that gcc vectorizes inside `#pragma omp simd` loops (16 lanes with
// AVX-512), after Cephes' expf and tanhf: relative error about 2 ulp (tests/test_activation.cpp
// checks them against the double-precision libm over the whole float range they serve).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace tg::cpu {

// exp(x) for -87.3 <= x <= 88 (NaN gives NaN), for callers that bound their argument anyway
// (GELU, tanh): no range checks, so it is about a third cheaper than fast_exp.
static inline float fast_exp_in_range(float x) {
  // exp(x) = 2^n * exp(r) with n = round(x / ln 2) and |r| <= ln(2) / 2. Adding 1.5 * 2^23 rounds
  // to the nearest integer in the vector unit (floorf would not vectorize without
  // -fno-trapping-math) and leaves n in the low bits of the sum, from where 2^n's exponent field is
  // built with unsigned integer arithmetic: no float-to-int conversion, which would be undefined
  // for NaN. In this range n is in [-126, 127], so 2^n is one normal float.
  float shifted = x * 1.44269504088896341f + 12582912.0f;
  float n = shifted - 12582912.0f;
  // ln 2 split in two (Cody-Waite) so that n * the first part is exact and r keeps its low bits.
  float r = std::fma(n, -0.693359375f, x);
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  float y = std::fma(p * r, r, r) + 1.0f;
  uint32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(float));
  uint32_t bits = (shifted_bits - 0x4B400000u + 127u) << 23;  // 0x4B400000 = bits of 1.5 * 2^23
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return y * scale;
}

// exp(x) for any float x: 0 below -87.3 (where the true value is a subnormal that nothing here
// needs), saturating at exp(88) ~ 1.65e38 above 88 instead of overflowing; NaN stays NaN.
// (Comparisons, not fminf/fmaxf: those keep NaN rules that stop gcc from vectorizing.)
static inline float fast_exp(float x) {
  float clamped = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  return x < -87.3f ? 0.0f : fast_exp_in_range(clamped);
}

// tanh(x) for float x. Small |x| uses Cephes' odd polynomial (tanh(x) = x + x^3 P(x^2)); elsewhere
// tanh(|x|) = (1 - e) / (1 + e) with e = exp(-2|x|) in (0, 0.29], where the subtraction loses at
// most one bit and e never overflows.
static inline float fast_tanh(float x) {
  float ax = std::fabs(x);
  float s = x * x;
  float poly = -5.70498872745e-3f;
  poly = std::fma(poly, s, 2.06390887954e-2f);
  poly = std::fma(poly, s, -5.37397155531e-2f);
  poly = std::fma(poly, s, 1.33314422036e-1f);
  poly = std::fma(poly, s, -3.33332819422e-1f);
  float small = std::fma(poly * s, x, x);
  // Past |x| = 40, e < 1e-34 and the quotient is 1 in float: capping the argument keeps it in range.
  float arg = -2.0f * ax;
  float e = fast_exp_in_range(arg < -80.0f ? -80.0f : arg);
  float large = std::copysign((1.0f - e) / (1.0f + e), x);
  return ax < 0.625f ? small : large;
}

}  // namespace tg::cpu
