// Tensor core: dtypes and their conversions, views, copies, factories, RNG.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <immintrin.h>

#include "tensor/cpu_allocator.h"
#include "tensor/tensor.h"

using namespace tg;

static uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static float float_of(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

TEST(DType, F16RoundTripsEveryHalf) {
  // Every f16 value converts to f32 and back to the same bits (NaNs stay NaN).
  for (uint32_t h = 0; h < 65536; h++) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) { EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))); continue; }
    ASSERT_EQ(f32_to_f16(f), h) << "half bits " << h;
  }
}

TEST(DType, BF16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 65536; h++) {
    float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), h);
  }
}

// The hardware converter (F16C, round to nearest even) is an independent reference. The library is
// compiled for baseline x86-64, so this one function is compiled for F16C and runs where the CPU has it.
__attribute__((target("f16c"))) static uint16_t f16_by_hardware(float f) {
  return static_cast<uint16_t>(_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0));
}

TEST(DType, F16MatchesHardwareOnRandomFloats) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "this CPU lacks F16C";
  Generator gen(7);
  for (int i = 0; i < 2000000; i++) {
    uint32_t bits = static_cast<uint32_t>(gen.next_u64());
    // Bias toward the interesting exponent range (subnormal half to overflow) half of the time.
    if (i % 2) bits = (bits & 0x807fffffu) | ((100u + (bits >> 23) % 50u) << 23);
    float f = float_of(bits);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), f16_by_hardware(f)) << "float bits " << std::hex << bits;
  }
}

TEST(DType, BF16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), f32_to_bf16(1.0f));
  // Just above the tie rounds up.
  EXPECT_EQ(f32_to_bf16(float_of(bits_of(1.0f + std::ldexp(1.0f, -8)) + 1)), f32_to_bf16(1.0f) + 1);
  // 1 + 3 * 2^-8 is between 1 + 2^-7 (odd) and 1 + 2^-6 (even): goes up to the even one.
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), f32_to_bf16(1.0f + std::ldexp(1.0f, -6)));
  EXPECT_TRUE(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::max()))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
}

TEST(DType, F16Limits) {
  EXPECT_EQ(f16_to_f32(f32_to_f16(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(65520.0f))));    // the tie above the max rounds to inf
  EXPECT_EQ(f16_to_f32(f32_to_f16(65519.0f)), 65504.0f);
  EXPECT_EQ(f16_to_f32(f32_to_f16(std::ldexp(1.0f, -24))), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(f32_to_f16(std::ldexp(1.0f, -25))), 0.0f);                   // tie to even zero
  EXPECT_EQ(f16_to_f32(f32_to_f16(std::ldexp(1.5f, -25))), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::signbit(f16_to_f32(f32_to_f16(-0.0f))));
}

TEST(DType, ParseNames) {
  EXPECT_EQ(parse_dtype("fp16"), DType::F16);
  EXPECT_EQ(parse_dtype("bf16"), DType::BF16);
  EXPECT_THROW(parse_dtype("f64"), Error);
}

TEST(Tensor, FactoriesAndMetadata) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(z.data_raw()) % 64, 0u);
  for (float v : z.to_vector()) EXPECT_EQ(v, 0.0f);
  Tensor a = Tensor::arange(5);
  EXPECT_EQ(a.to_vector(), (std::vector<float>{0, 1, 2, 3, 4}));
  EXPECT_EQ(Tensor::full({2}, 2.5f).to_vector(), (std::vector<float>{2.5f, 2.5f}));
  EXPECT_EQ(Tensor::arange(1, 2, 0.25).numel(), 4);
  EXPECT_THROW(Tensor::zeros({2, -1}), Error);
}

// A contiguous fill writes the value's bytes, converted once, into every element of every dtype,
// on one thread and, past 2^18 elements, on several: the same bits as the strided path, which
// converts at every element (and, for the halves, as f32_to_bf16 and friends, checked in
// test_half_bits.cpp); a strided view fills its own elements only.
TEST(Tensor, FillWritesTheConvertedValueIntoEveryElementOfEveryDtype) {
  for (DType dtype : {DType::F32, DType::BF16, DType::F16, DType::I32, DType::U8}) {
    for (int64_t n : {int64_t{7}, (int64_t{1} << 18) + 3}) {
      for (float value : {0.0f, -0.0f, 1.5f, 3.3f, 70000.0f}) {
        Tensor t = Tensor::full({n}, value, dtype);
        // The reference: a transposed (non-contiguous) view, filled element by element through the
        // general strided path, which converts the value at every element.
        Tensor reference = Tensor::zeros({2, 2}, dtype).transpose(0, 1);
        ASSERT_FALSE(reference.is_contiguous());
        reference.fill_(value);
        float expected = reference.to(DType::F32).contiguous().to_vector()[0];
        if (dtype == DType::BF16) {
          ASSERT_EQ(expected, bf16_to_f32(f32_to_bf16(value)));
        }
        if (dtype == DType::F16) {
          ASSERT_EQ(expected, f16_to_f32(f32_to_f16(value)));
        }
        std::vector<float> got = t.to(DType::F32).to_vector();
        for (int64_t i = 0; i < n; i += n / 7 + 1)
          ASSERT_EQ(std::memcmp(&got[i], &expected, 4), 0) << dtype_name(dtype) << " n " << n << " value " << value;
        ASSERT_EQ(std::memcmp(&got[n - 1], &expected, 4), 0) << dtype_name(dtype) << " n " << n << " value " << value;
      }
    }
  }
  Tensor grid = Tensor::zeros({4, 6}, DType::BF16);
  Tensor column = grid.narrow(1, 2, 1);
  column.fill_(2.0f);
  std::vector<float> v = grid.to(DType::F32).to_vector();
  for (int64_t i = 0; i < 24; i++) EXPECT_EQ(v[i], i % 6 == 2 ? 2.0f : 0.0f) << i;
}

TEST(Tensor, RandnIsReproducibleAndStandard) {
  Generator g1(42), g2(42), g3(43);
  auto a = Tensor::randn({1000}, &g1).to_vector(), b = Tensor::randn({1000}, &g2).to_vector();
  auto c = Tensor::randn({1000}, &g3).to_vector();
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  double mean = 0, var = 0;
  Generator g4(5);
  auto big = Tensor::randn({200000}, &g4).to_vector();
  for (float v : big) mean += v;
  mean /= big.size();
  for (float v : big) var += (v - mean) * (v - mean);
  var /= big.size();
  EXPECT_NEAR(mean, 0.0, 0.01);  // 5 standard errors of the mean
  EXPECT_NEAR(var, 1.0, 0.02);
}

TEST(Tensor, GeneratorStateRestores) {
  Generator g(3);
  g.next_u64();
  auto state = g.state();
  float x = g.normal();
  g.set_state(state);
  EXPECT_EQ(g.normal(), x);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::arange(24).view({2, 3, 4});
  Tensor tt = t.transpose(0, 2);  // (4, 3, 2)
  EXPECT_EQ(tt.shape(), (Shape{4, 3, 2}));
  EXPECT_FALSE(tt.is_contiguous());
  // Element [i][j][k] of the transpose is t[k][j][i] = k*12 + j*4 + i.
  auto v = tt.contiguous().to_vector();
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 2; k++) EXPECT_EQ(v[(i * 3 + j) * 2 + k], k * 12 + j * 4 + i);
  Tensor s = t.slice(2, 1, 4, 2);  // columns 1 and 3
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(s.contiguous().to_vector()[1], 3.0f);
  s.fill_(-1.0f);  // writes through to t
  EXPECT_EQ(t.to_vector()[1], -1.0f);
  EXPECT_EQ(t.to_vector()[0], 0.0f);
  EXPECT_EQ(t.select(1, 2).shape(), (Shape{2, 4}));
  EXPECT_EQ(t.unsqueeze(0).shape(), (Shape{1, 2, 3, 4}));
  EXPECT_EQ(t.view({-1, 4}).shape(), (Shape{6, 4}));
  EXPECT_THROW(tt.view({24}), Error);       // not contiguous
  EXPECT_EQ(tt.reshape({24}).numel(), 24);  // copies instead
  EXPECT_THROW(t.view({5, -1}), Error);
  EXPECT_THROW(t.transpose(0, 3), Error);
}

TEST(Tensor, ExpandBroadcastsWithZeroStride) {
  Tensor row = Tensor::from_vector({1, 2, 3}, {1, 3});
  Tensor e = row.expand({4, 3});
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.contiguous().to_vector()[10], 2.0f);
  EXPECT_THROW(row.expand({4, 2}), Error);
}

TEST(Tensor, DtypeConversionsRoundTrip) {
  Generator gen(11);
  Tensor x = Tensor::randn({37}, &gen);
  Tensor h = x.to(DType::BF16);
  EXPECT_EQ(h.dtype(), DType::BF16);
  auto xv = x.to_vector(), hv = h.to_vector();
  for (size_t i = 0; i < xv.size(); i++) EXPECT_EQ(hv[i], bf16_to_f32(f32_to_bf16(xv[i])));
  Tensor ids = Tensor::from_ints({3, -7, 1 << 30}, {3});
  EXPECT_EQ(ids.to_int_vector(), (std::vector<int32_t>{3, -7, 1 << 30}));
  EXPECT_THROW(ids.data<float>(), Error);
}

TEST(Tensor, CudaWithoutCudaNamesTheProblem) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present";
  try {
    Tensor::zeros({2}, DType::F32, Device::cuda());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    // "built without CUDA" in a CPU-only build, "no CUDA device (...)" in a CUDA build on a machine
    // without a GPU: the reason cuda_status() gives.
    EXPECT_NE(std::string(e.what()).find(cuda_status()), std::string::npos) << e.what();
  }
}

TEST(Tensor, PrintsShapeAndValues) {
  std::string s = Tensor::arange(3).str();
  EXPECT_NE(s.find("[0, 1, 2]"), std::string::npos) << s;
  EXPECT_NE(s.find("shape=(3)"), std::string::npos) << s;
}

// Why this process runs without the CPU allocator's block cache, or "" when it has one.
static std::string cpu_cache_off() {
#if defined(__SANITIZE_ADDRESS__)
  return "the block cache is off under AddressSanitizer";
#endif
  const char* env = std::getenv("TG_CPU_CACHE");
  return env && std::string(env) == "0" ? "TG_CPU_CACHE=0 turns the block cache off" : "";
}

TEST(CpuAllocator, ReusesFreedLargeBlocksAndCountsBytes) {
  if (const std::string why = cpu_cache_off(); !why.empty()) GTEST_SKIP() << why;
  cpu_release_cache();
  size_t before = cpu_memory_stats().in_use;
  void* first;
  {
    Tensor big = Tensor::empty({1 << 18});  // 1 MiB: cached on free
    first = big.data_raw();
    EXPECT_EQ(cpu_memory_stats().in_use, before + (size_t(1) << 20));
  }
  EXPECT_EQ(cpu_memory_stats().in_use, before);
  EXPECT_EQ(cpu_memory_stats().cached, size_t(1) << 20);
  Tensor again = Tensor::empty({1 << 18});
  EXPECT_EQ(again.data_raw(), first);  // the same block came back
  EXPECT_EQ(cpu_memory_stats().cached, 0u);
  EXPECT_GE(cpu_memory_stats().peak_in_use, before + (size_t(1) << 20));
  Tensor other_size = Tensor::empty({(1 << 18) + 16});
  EXPECT_NE(other_size.data_raw(), first);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(other_size.data_raw()) % 64, 0u);
}

// A miss takes the smallest cached block up to 25% larger than asked, counts the whole block in
// use, and the block goes back to its own size when freed; a block more than 25% larger is not taken.
TEST(CpuAllocator, ReusesACachedBlockUpToAQuarterLarger) {
  if (const std::string why = cpu_cache_off(); !why.empty()) GTEST_SKIP() << why;
  cpu_release_cache();
  const size_t before = cpu_memory_stats().in_use, block = size_t(1) << 20;
  void* first;
  {
    Tensor big = Tensor::empty({int64_t(block / 4)});
    first = big.data_raw();
  }
  {
    Tensor smaller = Tensor::empty({int64_t(block / 4 * 4 / 5)});  // 1 MiB is exactly 25% larger
    EXPECT_EQ(smaller.data_raw(), first);
    EXPECT_EQ(cpu_memory_stats().in_use, before + block) << "the whole block is in use";
    EXPECT_EQ(cpu_memory_stats().cached, 0u);
  }
  EXPECT_EQ(cpu_memory_stats().in_use, before);
  EXPECT_EQ(cpu_memory_stats().cached, block) << "back in the cache at its own size";
  {
    Tensor too_small = Tensor::empty({int64_t(block / 4 * 4 / 5) - 16});  // 1 MiB is over 25% larger
    EXPECT_NE(too_small.data_raw(), first);
    EXPECT_EQ(cpu_memory_stats().cached, block);
  }
  Tensor exact = Tensor::empty({int64_t(block / 4)});
  EXPECT_EQ(exact.data_raw(), first);
}

// In a borrow scope a miss takes any larger idle block rather than new memory (a checkpoint's
// transients between steps); outside it the usual 25% slack holds, and the scope's block goes back.
TEST(CpuAllocator, BorrowScopeTakesAnyLargerIdleBlock) {
  if (const std::string why = cpu_cache_off(); !why.empty()) GTEST_SKIP() << why;
  cpu_release_cache();
  const size_t big = size_t(8) << 20, small = size_t(1) << 20;
  void* big_block = nullptr;
  {
    Tensor t = Tensor::empty({int64_t(big / 4)});
    big_block = t.data_raw();
  }
  const CpuMemoryStats start = cpu_memory_stats();
  Tensor outside = Tensor::empty({int64_t(small / 4)});  // kept, so that the next 1 MiB cannot reuse it
  EXPECT_NE(outside.data_raw(), big_block) << "8 MiB is past the slack for 1 MiB";
  EXPECT_EQ(cpu_memory_stats().system_allocations, start.system_allocations + 1);
  {
    CpuCacheBorrowScope borrow;
    Tensor inside = Tensor::empty({int64_t(small / 4)});
    EXPECT_EQ(inside.data_raw(), big_block);
    EXPECT_EQ(cpu_memory_stats().system_allocations, start.system_allocations + 1) << "no new memory";
  }
  Tensor again = Tensor::empty({int64_t(big / 4)});
  EXPECT_EQ(again.data_raw(), big_block) << "the borrowed block is whole again for its own size";
}

// peak_reserved is the most ever held in live blocks and the cache together; system_allocations
// counts the blocks the cache could not serve.
TEST(CpuAllocator, CountsReservedBytesAndSystemAllocations) {
  if (const std::string why = cpu_cache_off(); !why.empty()) GTEST_SKIP() << why;
  cpu_release_cache();
  const CpuMemoryStats start = cpu_memory_stats();
  const size_t a_bytes = size_t(3) << 20, b_bytes = size_t(5) << 20;
  {
    Tensor a = Tensor::empty({int64_t(a_bytes / 4)});
  }  // a cached: in use + cached = start.in_use + a
  {
    Tensor b = Tensor::empty({int64_t(b_bytes / 4)});  // too large for a's block: a second system block
    const CpuMemoryStats s = cpu_memory_stats();
    EXPECT_EQ(s.system_allocations, start.system_allocations + 2);
    EXPECT_GE(s.peak_reserved, start.in_use + a_bytes + b_bytes);
  }
  Tensor again = Tensor::empty({int64_t(a_bytes / 4)});  // served by the cache
  EXPECT_EQ(cpu_memory_stats().system_allocations, start.system_allocations + 2);
  const std::string summary = cpu_memory_summary();
  EXPECT_NE(summary.find("cpu peak"), std::string::npos) << summary;
  EXPECT_NE(summary.find("in use"), std::string::npos) << summary;
  EXPECT_NE(summary.find("reserved"), std::string::npos) << summary;
}
