// ops/cpu/half_convert.h: the array conversions the CPU kernels use to load and store bf16/f16,
// at every instruction-set level. The reference is the scalar converter of tensor/half_bits.h,
// itself checked against double-precision values in tests/test_half_bits.cpp; here every lane of
// the vector paths must give its exact bits: every 16-bit pattern widened, and narrowed the f32
// values at and beside every rounding boundary, NaNs with payloads, infinities, f32 subnormals and
// a million random bit patterns. Lengths are odd so the scalar tail runs too, and large enough to
// take the threaded path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/cpu/half_convert.h"
#include "tensor/random.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;

namespace {

uint16_t scalar_narrow(DType dtype, float x) {
  return dtype == DType::BF16 ? f32_to_bf16_bits(x) : f32_to_f16_bits(x);
}
float scalar_widen(DType dtype, uint16_t h) { return dtype == DType::BF16 ? bf16_bits_to_f32(h) : f16_bits_to_f32(h); }

// f32 inputs that exercise narrowing: each half's value, the midpoints to its neighbours (ties)
// and the f32 values one ulp either side of them, specials, and random bit patterns.
std::vector<float> narrowing_inputs(DType dtype) {
  std::vector<float> xs;
  for (uint32_t h = 0; h < 0x10000u; h++) {
    float v = scalar_widen(dtype, static_cast<uint16_t>(h)), next = scalar_widen(dtype, static_cast<uint16_t>(h + 1));
    xs.push_back(v);
    if (h + 1 < 0x10000u && std::isfinite(v) && std::isfinite(next) && (h & 0x7fffu) != 0x7fffu) {
      float mid = static_cast<float>((static_cast<double>(v) + next) / 2);
      xs.push_back(mid);
      xs.push_back(bits_float(float_bits(mid) + 1));
      xs.push_back(bits_float(float_bits(mid) - 1));
    }
  }
  for (uint32_t bits : {0x7fc00001u, 0xffc12345u, 0x7f800001u, 0xff800001u, 0x7fffffffu, 0x7f800000u, 0xff800000u,
                        0x7f7fffffu, 0xff7fffffu, 0x00000001u, 0x807fffffu, 0x477ff000u, 0x477fefffu, 0x33000000u,
                        0x33000001u, 0x80000000u})
    xs.push_back(bits_float(bits));
  Generator gen(20261205);
  for (int i = 0; i < 1000000; i++) xs.push_back(bits_float(static_cast<uint32_t>(gen.next_u64())));
  if (xs.size() % 2 == 0) xs.push_back(1.0f);  // odd length: the scalar tail runs
  return xs;
}

class HalfConvert : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(HalfConvert);

TEST_P(HalfConvert, WidensEveryPatternExactly) {
  for (DType dtype : {DType::BF16, DType::F16}) {
    // Every pattern, three times over (196,608 values: the threaded path) plus one: an odd tail.
    std::vector<uint16_t> src;
    for (int rep = 0; rep < 3; rep++)
      for (uint32_t h = 0; h < 0x10000u; h++) src.push_back(static_cast<uint16_t>(h));
    src.push_back(0x3f80);
    std::vector<float> out(src.size(), -1.0f);
    cpu::convert_half_to_f32(dtype, src.data(), out.data(), static_cast<int64_t>(src.size()));
    for (size_t i = 0; i < src.size(); i++)
      ASSERT_EQ(float_bits(out[i]), float_bits(scalar_widen(dtype, src[i])))
          << dtype_name(dtype) << " pattern 0x" << std::hex << src[i];
  }
}

TEST_P(HalfConvert, NarrowsBitForBitAsTheScalarConverter) {
  for (DType dtype : {DType::BF16, DType::F16}) {
    std::vector<float> xs = narrowing_inputs(dtype);
    std::vector<uint16_t> out(xs.size(), 0xdead);
    cpu::convert_f32_to_half(dtype, xs.data(), out.data(), static_cast<int64_t>(xs.size()));
    for (size_t i = 0; i < xs.size(); i++)
      ASSERT_EQ(out[i], scalar_narrow(dtype, xs[i]))
          << dtype_name(dtype) << " f32 bits 0x" << std::hex << float_bits(xs[i]) << " at " << std::dec << i;
  }
}

TEST_P(HalfConvert, ShortArraysTouchNothingPastTheEnd) {
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (int64_t n : {0, 1, 15, 16, 17, 33}) {
      std::vector<float> xs(64, 1.5f), widened(64, -7.0f);
      std::vector<uint16_t> narrowed(64, 0xdead);
      cpu::convert_f32_to_half(dtype, xs.data(), narrowed.data(), n);
      cpu::convert_half_to_f32(dtype, narrowed.data(), widened.data(), n);
      for (int64_t i = 0; i < 64; i++) {
        EXPECT_EQ(narrowed[i], i < n ? scalar_narrow(dtype, 1.5f) : 0xdead) << n << " " << i;
        EXPECT_EQ(widened[i], i < n ? 1.5f : -7.0f) << n << " " << i;
      }
    }
  }
}

TEST_P(HalfConvert, StridedRowsConvertEachRowAndNothingBetween) {
  // 5 rows of 37 values (two vectors and a tail), rows 50 values apart in the 16-bit block and 41
  // in the f32 one: each row as the scalar converters give it, the gaps between rows untouched.
  const int64_t rows = 5, cols = 37, half_stride = 50, f32_stride = 41;
  Generator gen(7);
  for (DType dtype : {DType::BF16, DType::F16}) {
    std::vector<uint16_t> half(static_cast<size_t>(rows * half_stride));
    for (uint16_t& h : half) h = static_cast<uint16_t>(gen.next_u64());
    std::vector<float> wide(static_cast<size_t>(rows * f32_stride), -7.0f);
    cpu::convert_half_to_f32_rows(dtype, half.data(), half_stride, wide.data(), f32_stride, rows, cols);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < f32_stride; c++) {
        const float got = wide[r * f32_stride + c];
        if (c < cols)
          ASSERT_EQ(float_bits(got), float_bits(scalar_widen(dtype, half[r * half_stride + c]))) << r << " " << c;
        else
          ASSERT_EQ(got, -7.0f) << dtype_name(dtype) << " wrote between rows at " << r << " " << c;
      }
    std::vector<float> xs(static_cast<size_t>(rows * f32_stride));
    for (float& x : xs) x = gen.normal() * 1000.0f;
    std::vector<uint16_t> narrowed(static_cast<size_t>(rows * half_stride), 0xdead);
    cpu::convert_f32_to_half_rows(dtype, xs.data(), f32_stride, narrowed.data(), half_stride, rows, cols);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < half_stride; c++) {
        const uint16_t got = narrowed[r * half_stride + c];
        if (c < cols) ASSERT_EQ(got, scalar_narrow(dtype, xs[r * f32_stride + c])) << r << " " << c;
        else ASSERT_EQ(got, 0xdead) << dtype_name(dtype) << " wrote between rows at " << r << " " << c;
      }
  }
}

}  // namespace
