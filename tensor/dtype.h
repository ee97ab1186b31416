// Element types and exact conversions between f32 and the 16-bit floats.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tg {

enum class DType : uint8_t { F32, BF16, F16, I32, U8 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // "f32", "bf16", "f16", "i32", "u8"
// Accepts the names above plus "fp32", "float32", "fp16", "float16", "bfloat16", "int32", "uint8".
DType parse_dtype(const std::string& name);
bool is_floating(DType dtype);

// Round to nearest even, as the hardware converters do. NaN stays a (quiet) NaN, values past the
// largest finite half round to infinity, tiny values become subnormals or signed zero.
uint16_t f32_to_bf16(float value);
float bf16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);
float f16_to_f32(uint16_t bits);

}  // namespace tg
