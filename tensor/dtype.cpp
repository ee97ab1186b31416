#include "tensor/dtype.h"

#include "tensor/error.h"
#include "tensor/half_bits.h"

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

// The arithmetic is in tensor/half_bits.h, shared with the CUDA conversion kernels.
uint16_t f32_to_bf16(float value) { return f32_to_bf16_bits(value); }
float bf16_to_f32(uint16_t bits) { return bf16_bits_to_f32(bits); }
uint16_t f32_to_f16(float value) { return f32_to_f16_bits(value); }
float f16_to_f32(uint16_t bits) { return f16_bits_to_f32(bits); }

}  // namespace tg
