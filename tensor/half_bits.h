// f32 <-> bf16 / f16 as 16-bit patterns, written once for the host (tensor/dtype.cpp's
// f32_to_bf16 and friends, hence every CPU conversion) and the device (tensor/cuda_copy.cu's
// conversion kernels), so the two agree bit for bit by construction: integer arithmetic only,
// round to nearest even as the hardware converters do, NaN kept a quiet NaN (its sign and, for
// bf16, its top payload bits), values past the largest finite half to infinity, tiny values to
// subnormals or signed zero. Plain C++ (see tensor/host_device.h).
#pragma once
#include <cstdint>

#include "tensor/host_device.h"

namespace tg {

// bf16 is the top half of an f32. Adding 0x7fff plus the lowest kept bit rounds ties to even;
// a carry into the exponent is the correct next value, and from the largest finite values it
// lands on infinity, the correctly rounded result.
TG_HOST_DEVICE inline uint16_t f32_to_bf16_bits(float value) {
  uint32_t x = float_bits(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

TG_HOST_DEVICE inline float bf16_bits_to_f32(uint16_t bits) { return bits_float(static_cast<uint32_t>(bits) << 16); }

// Rounds the integer `mantissa` right by `shift` (1..31) bits, ties to even.
TG_HOST_DEVICE inline uint32_t round_shift_right_even(uint32_t mantissa, int shift) {
  uint32_t kept = mantissa >> shift;
  uint32_t rest = mantissa & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (kept & 1u))) kept++;
  return kept;
}

TG_HOST_DEVICE inline uint16_t f32_to_f16_bits(float value) {
  uint32_t x = float_bits(value);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity
  if (ax < 0x38800000u) {                        // below 2^-14: f16 subnormal range
    if (ax <= 0x33000000u) return sign;          // <= 2^-25 rounds to zero (a tie goes to even 0)
    uint32_t exponent = ax >> 23;                // 102..112 here: value = m * 2^(exponent - 150), shift 14..24
    uint32_t mantissa = (ax & 0x7fffffu) | 0x800000u;
    return sign | static_cast<uint16_t>(round_shift_right_even(mantissa, 126 - static_cast<int>(exponent)));
  }
  // Normal: rebias the exponent (127 -> 15) and round 23 mantissa bits to 10. A carry out of the
  // mantissa correctly bumps the exponent.
  uint32_t half = (((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13);
  uint32_t rest = ax & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;
  return sign | static_cast<uint16_t>(half);
}

// Exact: every f16 is an f32.
TG_HOST_DEVICE inline float f16_bits_to_f32(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24 is exact in f32.
    float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return bits_float(sign | float_bits(magnitude));
  }
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

}  // namespace tg
