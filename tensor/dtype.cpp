#include "tensor/dtype.h"

#include <cstring>

#include "tensor/error.h"

namespace tg {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
  }
  return "?";
}

DType parse_dtype(const std::string& name) {
  if (name == "f32" || name == "fp32" || name == "float32") return DType::F32;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "fp16" || name == "float16") return DType::F16;
  if (name == "i32" || name == "int32") return DType::I32;
  if (name == "u8" || name == "uint8") return DType::U8;
  throw Error("unknown dtype '" + name + "' (expected one of f32, bf16, f16, i32, u8)");
}

bool is_floating(DType dtype) {
  return dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16;
}

static uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

static float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_bf16(float value) {
  uint32_t x = float_bits(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // quiet NaN
  // Adding 0x7fff plus the lowest kept bit rounds ties to even; overflow carries into the
  // exponent and lands on infinity, which is the correctly rounded result.
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

float bf16_to_f32(uint16_t bits) { return bits_float(static_cast<uint32_t>(bits) << 16); }

// Rounds the integer `mantissa` right by `shift` bits, ties to even.
static uint32_t round_shift_right(uint32_t mantissa, int shift) {
  uint32_t kept = mantissa >> shift;
  uint32_t rest = mantissa & ((1u << shift) - 1u);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (kept & 1u))) kept++;
  return kept;
}

uint16_t f32_to_f16(float value) {
  uint32_t x = float_bits(value);
  uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u;                 // NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00u;                // >= 65520 rounds to infinity
  if (ax < 0x38800000u) {                                      // below 2^-14: f16 subnormal range
    if (ax <= 0x33000000u) return sign;                        // <= 2^-25 rounds to zero (a tie goes to even 0)
    uint32_t exponent = ax >> 23;                              // value = m * 2^(exponent - 150)
    uint32_t mantissa = (ax & 0x7fffffu) | 0x800000u;
    return sign | static_cast<uint16_t>(round_shift_right(mantissa, 126 - static_cast<int>(exponent)));
  }
  // Normal: rebias the exponent (127 -> 15) and round 23 mantissa bits to 10. A carry out of the
  // mantissa correctly bumps the exponent.
  uint32_t half = (((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13);
  uint32_t rest = ax & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++;
  return sign | static_cast<uint16_t>(half);
}

float f16_to_f32(uint16_t bits) {
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
