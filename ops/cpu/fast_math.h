// Vectorizable exp and tanh for the elementwise kernels (GELU, tanh, sigmoid, SiLU, softmax,
// log_softmax).
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

namespace fast_math_detail {

// The reduction shared by the exp functions: exp(x) = 2^n * exp(r) with n = round(x / ln 2) and
// |r| <= ln(2) / 2. Returns exp(r) (a polynomial, in [0.7, 1.42]) and sets n, as a two's-complement
// integer in a uint32_t. Valid for |x| < 2^22 (the rounding trick below); NaN gives NaN.
static inline float exp_reduce(float x, uint32_t& n) {
  // Adding 1.5 * 2^23 rounds to the nearest integer in the vector unit (floorf would not vectorize
  // without -fno-trapping-math) and leaves n in the low bits of the sum, read with unsigned integer
  // arithmetic: no float-to-int conversion, which would be undefined for NaN.
  float shifted = x * 1.44269504088896341f + 12582912.0f;
  float nf = shifted - 12582912.0f;
  // ln 2 split in two (Cody-Waite) so that n * the first part is exact and r keeps its low bits.
  float r = std::fma(nf, -0.693359375f, x);
  r = std::fma(nf, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  uint32_t shifted_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(float));
  n = shifted_bits - 0x4B400000u;  // 0x4B400000 = bits of 1.5 * 2^23
  return std::fma(p * r, r, r) + 1.0f;
}

// 2^n for -126 <= n <= 127 (one normal float, built in its exponent field).
static inline float pow2(uint32_t n) {
  uint32_t bits = (n + 127u) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return scale;
}

}  // namespace fast_math_detail

// exp(x) for -87.3 <= x <= 88 (NaN gives NaN), for callers that bound their argument anyway
// (GELU, tanh): no range checks, so it is about a third cheaper than fast_exp. In this range n is
// in [-126, 127], so 2^n is one normal float.
static inline float fast_exp_in_range(float x) {
  uint32_t n;
  float p = fast_math_detail::exp_reduce(x, n);
  return p * fast_math_detail::pow2(n);
}

// exp(x) for x <= 0, down through the subnormals (exp(-100) = 3.7e-44, not 0): sigmoid's tails.
// 2^n is applied as 2^(n + 64) * 2^-64, so n down to -150 still builds a normal float and only the
// last multiply rounds, once, where the result is subnormal; in [-87.3, 0] it is exactly
// fast_exp_in_range. Below -104 the true value is under half the smallest subnormal: 0 (so -inf
// gives 0). NaN gives NaN.
static inline float fast_exp_nonpositive(float x) {
  float clamped = x < -104.0f ? -104.0f : x;
  uint32_t n;
  float p = fast_math_detail::exp_reduce(clamped, n);
  float y = (p * fast_math_detail::pow2(n + 64u)) * 0x1p-64f;
  return x < -104.0f ? 0.0f : y;
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
