// tensor/half_bits.h: the one f32 <-> bf16 / f16 rounding that the CPU converters
// (tensor/dtype.cpp) and the CUDA conversion kernels (tensor/cuda_copy.cu) both compile. Checked
// here on the host against references in double: every 16-bit pattern, every tie between two
// neighbouring halves (and the f32 values either side of it), overflow, subnormals and NaN.
// The device instantiation is the same source, compared bit for bit in tests/test_cuda_tensor.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/half_bits.h"
#include "tensor/random.h"

using namespace tg;

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// The value of an f16 pattern from its fields, in double: (-1)^s 2^(e-15) (1 + m/1024) for normal
// e, m 2^-24 for e = 0, infinity or NaN for e = 31.
double f16_value(uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v;
  if (e == 31) v = m ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else if (e == 0) v = std::ldexp(static_cast<double>(m), -24);
  else v = std::ldexp(1.0 + m / 1024.0, e - 15);
  return s ? -v : v;
}

// Round-to-nearest-even into f16 by search over the table of the 31,744 finite non-negative f16
// values (patterns 0..0x7bff, increasing): independent of the bit manipulations under test.
// Past the largest finite value (65504) the rounding goes on as if the exponent range were
// unbounded, so from 65520 (the tie with the next, 2^16) on the result is infinity.
uint16_t f16_reference(float x) {
  static const std::vector<double> table = [] {
    std::vector<double> t(0x7c00);
    for (uint32_t h = 0; h < 0x7c00; h++) t[h] = f16_value(static_cast<uint16_t>(h));
    return t;
  }();
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (std::isnan(x)) return sign | 0x7e00;
  if (a >= 65520.0) return sign | 0x7c00;
  const auto above = std::lower_bound(table.begin(), table.end(), a);
  if (above == table.end()) return sign | 0x7bff;  // in (65504, 65520): nearer the largest finite
  const uint16_t hi = static_cast<uint16_t>(above - table.begin());
  if (*above == a || hi == 0) return sign | hi;
  const uint16_t lo = hi - 1;
  const double down = a - table[lo], up = *above - a;
  if (down < up) return sign | lo;
  if (up < down) return sign | hi;
  return sign | ((lo & 1) ? hi : lo);  // the tie: the even pattern
}

}  // namespace

TEST(HalfBits, EveryF16PatternHasItsValueAndRoundTrips) {
  for (uint32_t h = 0; h < 65536; h++) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const float f = f16_bits_to_f32(bits);
    const double want = f16_value(bits);
    ASSERT_EQ(to_bits(f16_to_f32(bits)), to_bits(f)) << std::hex << h;  // dtype.h's entry point is this function
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      // A NaN comes back as the quiet NaN of its sign, 0x7e00.
      ASSERT_EQ(f32_to_f16_bits(f), static_cast<uint16_t>((h & 0x8000) | 0x7e00)) << std::hex << h;
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), want) << std::hex << h;
    ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;  // -0 included
    ASSERT_EQ(f32_to_f16_bits(f), bits) << std::hex << h;
    ASSERT_EQ(f32_to_f16(f), bits) << std::hex << h;
  }
}

// Between every two neighbouring finite f16 values of either sign (subnormals, the subnormal-normal
// boundary and every binade included) the midpoint, exact in f32 (12 significant bits), goes to the
// even one; the f32 values one ulp either side of it go to the nearer one. The midpoint above the
// largest finite value, 65520, goes to infinity, and so does everything past it.
TEST(HalfBits, F16TiesGoToEvenAndNeighboursToTheNearer) {
  for (uint16_t sign : {uint16_t{0}, uint16_t{0x8000}})
    for (uint32_t lo = 0; lo < 0x7c00; lo++) {
      const uint16_t a = static_cast<uint16_t>(sign | lo), b = static_cast<uint16_t>(sign | (lo + 1));
      // Above 0x7bff (65504) the next value in an unbounded exponent range would be 2^16.
      const double next = lo + 1 == 0x7c00 ? (sign ? -65536.0 : 65536.0) : f16_value(b);
      const double mid = (f16_value(a) + next) / 2;
      const float m = static_cast<float>(mid);
      ASSERT_EQ(static_cast<double>(m), mid) << std::hex << lo;
      const uint16_t even = (lo & 1) ? b : a;
      ASSERT_EQ(f32_to_f16_bits(m), even) << std::hex << lo;
      // One f32 ulp toward a, one toward b (magnitudes: below and above the midpoint).
      const float toward_a = from_bits(to_bits(m) - 1), toward_b = from_bits(to_bits(m) + 1);
      ASSERT_EQ(f32_to_f16_bits(toward_a), a) << std::hex << lo;
      ASSERT_EQ(f32_to_f16_bits(toward_b), b) << std::hex << lo;
    }
}

TEST(HalfBits, F16OverflowSubnormalsAndNaN) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(f32_to_f16_bits(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16_bits(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(f32_to_f16_bits(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16_bits(-1e6f), 0xfc00);
  EXPECT_EQ(f32_to_f16_bits(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(f32_to_f16_bits(inf), 0x7c00);
  EXPECT_EQ(f32_to_f16_bits(-inf), 0xfc00);
  // Smallest subnormal 2^-24; half of it is a tie with zero (even); just above it rounds up.
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(f32_to_f16_bits(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(f32_to_f16_bits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  // 1.5 * 2^-24 is a tie between 1 and 2 (x 2^-24): even 2. 2.5 * 2^-24: even 2.
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.5f, -24)), 0x0002);
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(2.5f, -24)), 0x0002);
  // The largest subnormal and the smallest normal, and the tie between them (odd 0x3ff: up).
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1023.0f, -24)), 0x03ff);
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1023.5f, -24)), 0x0400);
  // f32 subnormals are far below f16's range: signed zero.
  EXPECT_EQ(f32_to_f16_bits(from_bits(0x00000001u)), 0x0000);
  EXPECT_EQ(f32_to_f16_bits(from_bits(0x80400000u)), 0x8000);
  // NaN: quiet, sign kept, from quiet and signalling f32 NaNs alike.
  EXPECT_EQ(f32_to_f16_bits(from_bits(0x7fc00000u)), 0x7e00);
  EXPECT_EQ(f32_to_f16_bits(from_bits(0x7f800001u)), 0x7e00);
  EXPECT_EQ(f32_to_f16_bits(from_bits(0xffc12345u)), 0xfe00);
}

// Random floats against the table search: half of them drawn over every f32, half from the
// exponents where f16 does something (2^-27 .. 2^17: zero, subnormal, normal, overflow).
TEST(HalfBits, F16MatchesTheReferenceOnRandomFloats) {
  Generator gen(11);
  for (int i = 0; i < 300000; i++) {
    uint32_t bits = static_cast<uint32_t>(gen.next_u64());
    if (i % 2) bits = (bits & 0x807fffffu) | ((100u + (bits >> 23) % 45u) << 23);
    const float f = from_bits(bits);
    ASSERT_EQ(f32_to_f16_bits(f), f16_reference(f)) << "float bits " << std::hex << bits;
  }
}

// bf16 is the top half of an f32: every pattern's value is its bits shifted up, and it rounds
// back to itself; a NaN comes back quiet (0x0040 set) with its sign and top payload bits.
TEST(HalfBits, EveryBF16PatternRoundTrips) {
  for (uint32_t h = 0; h < 65536; h++) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const float f = bf16_bits_to_f32(bits);
    ASSERT_EQ(to_bits(f), h << 16) << std::hex << h;
    ASSERT_EQ(to_bits(bf16_to_f32(bits)), to_bits(f)) << std::hex << h;
    const bool nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
    const uint16_t want = nan ? static_cast<uint16_t>(h | 0x0040) : bits;
    ASSERT_EQ(f32_to_bf16_bits(f), want) << std::hex << h;
    ASSERT_EQ(f32_to_bf16(f), want) << std::hex << h;
  }
}

// Every tie between neighbouring finite bf16 patterns (the f32 with only bit 15 of the dropped
// half set) goes to the even pattern, one f32 ulp either side to the nearer; the tie above the
// largest finite bf16 goes to infinity.
TEST(HalfBits, BF16TiesGoToEvenAndNeighboursToTheNearer) {
  for (uint32_t sign : {0u, 0x8000u})
    for (uint32_t lo = 0; lo < 0x7f80; lo++) {
      const uint32_t a = sign | lo, b = sign | (lo + 1);
      const uint32_t mid = (a << 16) | 0x8000u;
      ASSERT_EQ(f32_to_bf16_bits(from_bits(mid)), (lo & 1) ? b : a) << std::hex << lo;
      ASSERT_EQ(f32_to_bf16_bits(from_bits(mid - 1)), a) << std::hex << lo;
      ASSERT_EQ(f32_to_bf16_bits(from_bits(mid + 1)), b) << std::hex << lo;
    }
  EXPECT_EQ(f32_to_bf16_bits(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(f32_to_bf16_bits(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(f32_to_bf16_bits(from_bits(0x7f800001u)), 0x7fc0);  // signalling NaN: quieted
  EXPECT_EQ(f32_to_bf16_bits(from_bits(0xffc12345u)), 0xffc1);  // sign and top payload kept
  EXPECT_EQ(f32_to_bf16_bits(from_bits(0x00008000u)), 0x0000);  // f32 subnormal tie: even zero
  EXPECT_EQ(f32_to_bf16_bits(from_bits(0x00018000u)), 0x0002);  // tie between 1 and 2: even 2
}
