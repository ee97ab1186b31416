// The tensor layer on CUDA: storage through the caching allocator, copies between and on devices
// (strided, with dtype conversion), fills, factories and host reads. Copies and conversions are
// exact operations, so every GPU result here must equal the CPU's bit for bit: there is no
// tolerance to state. The CPU-runnable tests at the end check the device queries, the errors
// without a GPU, and the index arithmetic the GPU kernels use.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tensor/copy.h"
#include "tensor/cuda_allocator.h"
#include "tensor/cuda_copy.h"
#include "tensor/tensor.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

const std::vector<DType> kAllDtypes = {DType::F32, DType::BF16, DType::F16, DType::I32, DType::U8};

// A CPU tensor of `dtype` whose bytes are random: every bit pattern (NaN payloads, infinities,
// subnormals, negative zero, any integer) is fair game.
Tensor random_bits(const Shape& shape, DType dtype, Generator& gen) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = static_cast<uint8_t*>(t.data_raw());
  size_t n = t.nbytes();
  for (size_t i = 0; i < n; i += 8) {
    uint64_t r = gen.next_u64();
    std::memcpy(p + i, &r, std::min<size_t>(8, n - i));
  }
  return t;
}

// A CPU f32 tensor holding exactly these bit patterns.
Tensor f32_from_bits(const std::vector<uint32_t>& bits) {
  Tensor t = Tensor::empty({static_cast<int64_t>(bits.size())}, DType::F32);
  if (!bits.empty()) std::memcpy(t.data_raw(), bits.data(), bits.size() * 4);
  return t;
}

std::vector<uint8_t> host_bytes(const Tensor& t) {
  Tensor h = t.to(Device::cpu()).contiguous();
  const auto* p = static_cast<const uint8_t*>(h.data_raw());
  return std::vector<uint8_t>(p, p + h.nbytes());
}

std::string hex(const uint8_t* p, size_t size) {
  static const char* digits = "0123456789abcdef";
  std::string s = "0x";
  for (size_t b = size; b-- > 0;) {  // little-endian bytes, printed most significant first
    s += digits[p[b] >> 4];
    s += digits[p[b] & 15];
  }
  return s;
}

// Same dtype, shape and bytes, element by element; reports the first five differences.
void expect_same_bytes(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  ASSERT_EQ(got.shape(), want.shape()) << what;
  std::vector<uint8_t> a = host_bytes(got), b = host_bytes(want);
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t size = dtype_size(got.dtype());
  int reported = 0;
  for (size_t i = 0; i * size < a.size(); i++)
    if (std::memcmp(&a[i * size], &b[i * size], size) != 0 && reported++ < 5)
      ADD_FAILURE() << what << " [" << i << "]: got " << hex(&a[i * size], size) << ", want " << hex(&b[i * size], size);
}

std::string dtype_pair(DType from, DType to) { return std::string(dtype_name(from)) + "->" + dtype_name(to); }

using ViewFn = std::function<Tensor(const Tensor&)>;

// Views of a (5, 33, 257) tensor that exercise every kind of stride: permuted, stepped, offset,
// broadcast (stride 0), a single element, and one that stays contiguous.
std::vector<std::pair<std::string, ViewFn>> strided_views() {
  return {
      {"whole", [](const Tensor& t) { return t; }},
      {"transpose(1,2)", [](const Tensor& t) { return t.transpose(1, 2); }},
      {"permute(2,0,1)", [](const Tensor& t) { return t.permute({2, 0, 1}); }},
      {"slice(2,1,250,step 3)", [](const Tensor& t) { return t.slice(2, 1, 250, 3); }},
      {"slice(0,1,5,step 2).transpose(0,2)", [](const Tensor& t) { return t.slice(0, 1, 5, 2).transpose(0, 2); }},
      {"select(1,7) expanded to (4,5,257)", [](const Tensor& t) { return t.select(1, 7).unsqueeze(0).expand({4, 5, 257}); }},
      {"column expanded to (33,100)", [](const Tensor& t) { return t.select(0, 2).slice(1, 3, 4).expand({33, 100}); }},
      {"one element", [](const Tensor& t) { return t.slice(0, 4, 5).slice(1, 32, 33).slice(2, 256, 257); }},
      {"narrow(1,3,20) (offset rows)", [](const Tensor& t) { return t.narrow(1, 3, 20); }},
  };
}

}  // namespace

// ---- GPU tests -------------------------------------------------------------------------------

TEST(CudaTensor, RoundTripIsBitExactForEveryDtype) {
  TG_REQUIRE_GPU();
  Generator gen(1);
  for (DType dtype : kAllDtypes) {
    for (Shape shape : {Shape{}, Shape{0}, Shape{1}, Shape{7}, Shape{33, 257}, Shape{1000003}}) {
      Tensor x = random_bits(shape, dtype, gen);
      Tensor on_gpu = x.to(test::gpu());
      EXPECT_EQ(on_gpu.device(), test::gpu());
      EXPECT_EQ(on_gpu.dtype(), dtype);
      Tensor back = on_gpu.to(Device::cpu());
      EXPECT_TRUE(back.device().is_cpu());
      expect_same_bytes(back, x, std::string("round trip ") + dtype_name(dtype) + " " + shape_str(shape));
      // A second hop on the device (contiguous, same dtype: the memcpy path) keeps the bits too.
      expect_same_bytes(on_gpu.clone(), x, std::string("clone on the GPU ") + dtype_name(dtype) + " " + shape_str(shape));
    }
  }
}

TEST(CudaTensor, StridedViewsCopyLikeTheCpuForEveryDtypePair) {
  TG_REQUIRE_GPU();
  Generator gen(2);
  for (DType from : kAllDtypes) {
    Tensor base_cpu = random_bits({5, 33, 257}, from, gen);
    Tensor base_gpu = base_cpu.to(test::gpu());
    for (const auto& [name, view] : strided_views()) {
      Tensor v_cpu = view(base_cpu), v_gpu = view(base_gpu);
      expect_same_bytes(v_gpu.contiguous(), v_cpu.contiguous(), name + " contiguous() " + dtype_name(from));
      for (DType to : kAllDtypes)
        expect_same_bytes(v_gpu.to(to), v_cpu.to(to), name + " to(dtype) " + dtype_pair(from, to));
    }
  }
}

TEST(CudaTensor, CopiesIntoStridedDestinations) {
  TG_REQUIRE_GPU();
  Generator gen(3);
  for (DType from : kAllDtypes) {
    for (DType to : kAllDtypes) {
      Tensor src_cpu = random_bits({33, 100}, from, gen);
      // Into a transposed destination, from a GPU source and from a CPU source (across devices).
      for (bool src_on_gpu : {true, false}) {
        Tensor want = Tensor::zeros({100, 33}, to);
        want.transpose(0, 1).copy_(src_cpu);
        Tensor got = Tensor::zeros({100, 33}, to, test::gpu());
        got.transpose(0, 1).copy_(src_on_gpu ? src_cpu.to(test::gpu()) : src_cpu);
        expect_same_bytes(got, want, "into transpose " + dtype_pair(from, to) + (src_on_gpu ? " gpu->gpu" : " cpu->gpu"));
      }
      // Into every third column of a wider tensor: the other columns keep their zeros.
      Tensor want = Tensor::zeros({33, 300}, to);
      want.slice(1, 2, 300, 3).copy_(src_cpu);
      Tensor got = Tensor::zeros({33, 300}, to, test::gpu());
      got.slice(1, 2, 300, 3).copy_(src_cpu.to(test::gpu()));
      expect_same_bytes(got, want, "into slice(step 3) " + dtype_pair(from, to));
      // GPU -> CPU into a strided CPU destination (the landing buffer plus a CPU scatter).
      Tensor host_want = Tensor::zeros({100, 33}, to), host_got = Tensor::zeros({100, 33}, to);
      host_want.transpose(0, 1).copy_(src_cpu);
      host_got.transpose(0, 1).copy_(src_cpu.to(test::gpu()));
      expect_same_bytes(host_got, host_want, "gpu->cpu into transpose " + dtype_pair(from, to));
    }
  }
}

TEST(CudaTensor, EightUnmergeableDimsWorkAndNineAreRejected) {
  TG_REQUIRE_GPU();
  Generator gen(4);
  // Reversing all dims of a contiguous tensor leaves no two neighbours mergeable.
  Tensor eight = random_bits({2, 3, 2, 3, 2, 3, 2, 3}, DType::F32, gen);
  Tensor reversed8 = eight.permute({7, 6, 5, 4, 3, 2, 1, 0});
  expect_same_bytes(reversed8.to(test::gpu()).contiguous(), reversed8.contiguous(), "8 reversed dims, same dtype");
  expect_same_bytes(eight.to(test::gpu()).permute({7, 6, 5, 4, 3, 2, 1, 0}).to(DType::BF16), reversed8.to(DType::BF16),
                    "8 reversed dims, f32->bf16 on the GPU");
  Tensor nine = Tensor::zeros({2, 2, 2, 2, 2, 2, 2, 2, 2}, DType::F32, test::gpu());
  EXPECT_ERROR_MENTIONS(nine.permute({8, 7, 6, 5, 4, 3, 2, 1, 0}).contiguous(), "copy_strided", "(2, 2, 2, 2, 2, 2, 2, 2, 2)",
                        "at most 8");
}

TEST(CudaTensor, CopyIntoAnExpandedDestinationIsRejected) {
  TG_REQUIRE_GPU();
  Tensor dst = Tensor::zeros({1, 5}, DType::F32, test::gpu()).expand({3, 5});
  EXPECT_ERROR_MENTIONS(dst.copy_(Tensor::ones({3, 5}, DType::F32, test::gpu())), "copy_strided", "stride-0");
}

// Beyond 2^31 elements the kernel switches to 64-bit index arithmetic: a (2^25 + 1, 64) u8
// broadcast of one row is 2^31 + 64 elements (2 GiB on the device and on the host).
TEST(CudaTensor, CopiesPast2To31ElementsUse64BitIndexing) {
  TG_REQUIRE_GPU();
  const int64_t rows = (int64_t(1) << 25) + 1, cols = 64;
  std::vector<float> pattern(cols);
  for (int64_t c = 0; c < cols; c++) pattern[c] = static_cast<float>((c * 37 + 11) % 251);
  Tensor row = Tensor::from_vector(pattern, {1, cols}, DType::U8);
  Tensor big = row.to(test::gpu()).expand({rows, cols}).contiguous();
  ASSERT_GT(big.numel(), int64_t(INT32_MAX));
  Tensor host = big.to(Device::cpu());
  const auto* p = static_cast<const uint8_t*>(host.data_raw());
  const auto* want = static_cast<const uint8_t*>(row.data_raw());
  int64_t bad_rows = 0;
  for (int64_t r = 0; r < rows; r++) bad_rows += std::memcmp(p + r * cols, want, cols) != 0;
  EXPECT_EQ(bad_rows, 0);
  EXPECT_EQ(std::memcmp(p + (rows - 1) * cols, want, cols), 0) << "the last row (past 2^31) differs";
}

// 2M f32 values, mixing ordinary numbers with every case a converter can get wrong: NaN with
// payloads of both signs, infinities, f32 subnormals, exact rounding ties of bf16 and f16, the f16
// overflow and subnormal boundaries, and integers near the i32 and u8 limits.
static std::vector<uint32_t> awkward_f32_bits(Generator& gen, size_t count) {
  auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  std::vector<uint32_t> v = {
      0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u,
      0x7fbfffffu, 0x7fffffffu, 0xffffffffu, 0x7fa00000u, 0x00000001u, 0x80000001u, 0x007fffffu, 0x00400000u,
      0x00800000u, 0x7f7fffffu, 0xff7fffffu, 0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7f8000u, 0x7f7fffffu,
      bits(65504.0f), bits(65519.0f), bits(65519.996f), bits(65520.0f), bits(-65520.0f), bits(65536.0f),
      bits(5.9604644775390625e-8f), bits(2.98023223876953125e-8f), bits(2.9802326e-8f), bits(8.940697e-8f),
      bits(6.103515625e-5f), bits(6.1035156e-5f), bits(6.0975552e-5f), bits(1.5f), bits(2.5f), bits(-0.5f),
      bits(-1.0f), bits(254.5f), bits(255.0f), bits(255.9f), bits(256.0f), bits(2147483520.0f), bits(2147483648.0f),
      bits(-2147483648.0f), bits(-2147483904.0f), bits(16777217.0f), bits(1e10f), bits(-1e10f), bits(0.1f)};
  while (v.size() < count) {
    uint64_t r = gen.next_u64();
    uint32_t lo = static_cast<uint32_t>(r), hi = static_cast<uint32_t>(r >> 32);
    switch (hi % 6) {
      case 0: v.push_back(lo); break;                                   // any pattern at all
      case 1: v.push_back((lo & 0x807fffffu) | ((hi >> 8) % 60 + 97) << 23); break;  // |x| in [2^-30, 2^30)
      case 2: v.push_back((lo & ~0xffffu) | 0x8000u); break;            // a bf16 tie (then rounds to even)
      case 3: v.push_back((lo & 0x80000000u) | ((hi >> 8) % 31 + 102) << 23 | (lo & 0x7fe000u) | 0x1000u); break;  // f16 tie
      case 4: v.push_back(lo & 0x807fffffu); break;                     // f32 subnormal
      default: v.push_back(bits(static_cast<float>(static_cast<int32_t>(lo)) / static_cast<float>(1 + (hi % 7)))); break;
    }
  }
  return v;
}

TEST(CudaTensor, ConversionsMatchTheCpuConverterBitForBit) {
  TG_REQUIRE_GPU();
  Generator gen(5);
  Tensor x = f32_from_bits(awkward_f32_bits(gen, size_t(1) << 21));
  Tensor x_gpu = x.to(test::gpu());
  for (DType to : kAllDtypes) expect_same_bytes(x_gpu.to(to), x.to(to), dtype_pair(DType::F32, to) + " (2M awkward values)");

  // Every bf16 and f16 pattern, every u8, and i32s around the limits, into every dtype.
  std::vector<Tensor> sources;
  for (DType half : {DType::BF16, DType::F16}) {
    Tensor all = Tensor::empty({65536}, half);
    auto* p = static_cast<uint16_t*>(all.data_raw());
    for (uint32_t i = 0; i < 65536; i++) p[i] = static_cast<uint16_t>(i);
    sources.push_back(all);
  }
  Tensor bytes = Tensor::empty({256}, DType::U8);
  for (int i = 0; i < 256; i++) static_cast<uint8_t*>(bytes.data_raw())[i] = static_cast<uint8_t>(i);
  sources.push_back(bytes);
  std::vector<int32_t> ints = {0, 1, -1, 255, 256, 16777216, 16777217, -16777217, INT32_MAX, INT32_MIN, INT32_MAX - 64};
  for (int i = 0; i < 100000; i++) ints.push_back(static_cast<int32_t>(gen.next_u64()));
  sources.push_back(Tensor::from_ints(ints, {static_cast<int64_t>(ints.size())}));
  for (const Tensor& src : sources) {
    Tensor src_gpu = src.to(test::gpu());
    for (DType to : kAllDtypes) expect_same_bytes(src_gpu.to(to), src.to(to), dtype_pair(src.dtype(), to));
  }
}

TEST(CudaTensor, FillMatchesTheCpu) {
  TG_REQUIRE_GPU();
  const float values[] = {0.0f, -0.0f, 1.5f, -3.25f, std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(), 1e10f, 300.0f, -7.0f, 65519.99f, 1e-40f};
  for (DType dtype : kAllDtypes) {
    for (float value : values) {
      std::string what = std::string("full ") + dtype_name(dtype) + " " + std::to_string(value);
      expect_same_bytes(Tensor::full({1000003}, value, dtype, test::gpu()), Tensor::full({1000003}, value, dtype), what);
      // Strided fills leave the other elements alone; an expanded destination is fine for a fill.
      Tensor want = Tensor::full({33, 257}, 9.0f, dtype), got = Tensor::full({33, 257}, 9.0f, dtype, test::gpu());
      want.slice(1, 1, 257, 3).fill_(value);
      got.slice(1, 1, 257, 3).fill_(value);
      want.transpose(0, 1).slice(0, 0, 100).slice(1, 5, 30).fill_(-value);
      got.transpose(0, 1).slice(0, 0, 100).slice(1, 5, 30).fill_(-value);
      want.select(0, 31).unsqueeze(0).expand({4, 257}).fill_(2.0f);
      got.select(0, 31).unsqueeze(0).expand({4, 257}).fill_(2.0f);
      expect_same_bytes(got, want, "strided " + what);
    }
  }
}

TEST(CudaTensor, FactoriesAndHostReadsMatchTheCpu) {
  TG_REQUIRE_GPU();
  for (DType dtype : {DType::F32, DType::BF16, DType::F16}) {
    Generator a(42), b(42);
    expect_same_bytes(Tensor::randn({1000, 7}, &a, dtype, test::gpu()), Tensor::randn({1000, 7}, &b, dtype),
                      std::string("randn ") + dtype_name(dtype));
    expect_same_bytes(Tensor::rand({1000, 7}, &a, dtype, test::gpu()), Tensor::rand({1000, 7}, &b, dtype),
                      std::string("rand ") + dtype_name(dtype));
  }
  for (DType dtype : kAllDtypes) {
    expect_same_bytes(Tensor::zeros({3, 5}, dtype, test::gpu()), Tensor::zeros({3, 5}, dtype), "zeros");
    expect_same_bytes(Tensor::ones({3, 5}, dtype, test::gpu()), Tensor::ones({3, 5}, dtype), "ones");
    expect_same_bytes(Tensor::arange(0, 10, 0.5, dtype, test::gpu()), Tensor::arange(0, 10, 0.5, dtype), "arange");
  }
  Tensor t = Tensor::arange(12, DType::F32, test::gpu()).view({3, 4});
  EXPECT_EQ(t.device(), test::gpu());
  EXPECT_EQ(t.to_vector(), Tensor::arange(12).to_vector());
  EXPECT_EQ(t.transpose(0, 1).to_int_vector(), Tensor::arange(12).view({3, 4}).transpose(0, 1).to_int_vector());
  EXPECT_EQ(t.select(0, 2).select(0, 1).item(), 9.0f);
  EXPECT_EQ(Tensor::scalar(2.5f, DType::BF16, test::gpu()).item(), 2.5f);
  std::string s = t.str();
  EXPECT_NE(s.find("[8, 9, 10, 11]"), std::string::npos) << s;
  EXPECT_NE(s.find("device=cuda:0"), std::string::npos) << s;
}

TEST(CudaTensor, CopiesBetweenTwoGpus) {
  TG_REQUIRE_GPU();
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs two GPUs (" << cuda_status() << ")";
  Generator gen(6);
  Tensor x = random_bits({33, 257}, DType::F32, gen);
  Tensor on1 = x.to(test::gpu()).to(Device::cuda(1));
  EXPECT_EQ(on1.device(), Device::cuda(1));
  expect_same_bytes(on1, x, "cuda:0 -> cuda:1");
  Tensor dst = Tensor::zeros({257, 33}, DType::BF16, Device::cuda(1));
  dst.transpose(0, 1).copy_(x.to(test::gpu()));
  Tensor want = Tensor::zeros({257, 33}, DType::BF16);
  want.transpose(0, 1).copy_(x);
  expect_same_bytes(dst, want, "cuda:0 f32 -> transposed cuda:1 bf16");
}

TEST(CudaAllocator, ReusesAFreedBlockWithoutCallingCudaMalloc) {
  TG_REQUIRE_GPU();
  Device gpu = test::gpu();
  cuda_empty_cache(gpu);
  CudaMemoryStats s0 = cuda_memory_stats(gpu);
  const int64_t size = (int64_t(3) << 20) + 5;  // rounds up to a 4 MiB block
  void* first = nullptr;
  {
    Tensor a = Tensor::empty({size}, DType::U8, gpu);
    first = a.data_raw();
    CudaMemoryStats s = cuda_memory_stats(gpu);
    EXPECT_EQ(s.cudamalloc_count, s0.cudamalloc_count + 1);
    EXPECT_EQ(s.alloc_count, s0.alloc_count + 1);
    EXPECT_EQ(s.allocated_bytes, s0.allocated_bytes + (size_t(4) << 20));
  }
  CudaMemoryStats s1 = cuda_memory_stats(gpu);
  EXPECT_EQ(s1.allocated_bytes, s0.allocated_bytes);
  EXPECT_EQ(s1.reserved_bytes, s0.reserved_bytes + (size_t(4) << 20));  // freed, but cached
  {
    Tensor b = Tensor::empty({size - 1000}, DType::U8, gpu);  // another size that rounds to 4 MiB
    EXPECT_EQ(b.data_raw(), first);
    CudaMemoryStats s = cuda_memory_stats(gpu);
    EXPECT_EQ(s.cudamalloc_count, s1.cudamalloc_count);
    EXPECT_EQ(s.alloc_count, s1.alloc_count + 1);
  }
  {
    // With the 4 MiB block in use, a cached 6 MiB block serves a 3.5 MiB request (both in the
    // [4, 8) MiB bin: best fit within the bin)...
    Tensor keep = Tensor::empty({int64_t(4) << 20}, DType::U8, gpu);
    EXPECT_EQ(keep.data_raw(), first);
    Tensor six = Tensor::empty({int64_t(6) << 20}, DType::U8, gpu);
    void* six_ptr = six.data_raw();
    six = Tensor();
    CudaMemoryStats before = cuda_memory_stats(gpu);
    Tensor mid = Tensor::empty({int64_t(7) << 19}, DType::U8, gpu);
    EXPECT_EQ(mid.data_raw(), six_ptr);
    EXPECT_EQ(cuda_memory_stats(gpu).cudamalloc_count, before.cudamalloc_count);
    // ...but a cached 4 MiB block never serves a 2 MiB request: that is another bin.
    keep = Tensor();
    Tensor two = Tensor::empty({int64_t(2) << 20}, DType::U8, gpu);
    EXPECT_NE(two.data_raw(), first);
    EXPECT_EQ(cuda_memory_stats(gpu).cudamalloc_count, before.cudamalloc_count + 1);
  }
  // Small and empty requests get distinct 512-byte blocks.
  CudaMemoryStats s2 = cuda_memory_stats(gpu);
  Tensor small = Tensor::empty({100}, DType::U8, gpu), empty1 = Tensor::empty({0}, DType::F32, gpu),
         empty2 = Tensor::empty({0}, DType::F32, gpu);
  EXPECT_EQ(cuda_memory_stats(gpu).allocated_bytes, s2.allocated_bytes + 3 * 512);
  EXPECT_NE(empty1.data_raw(), nullptr);
  EXPECT_NE(empty1.data_raw(), empty2.data_raw());
  EXPECT_EQ(empty1.to(Device::cpu()).numel(), 0);
  EXPECT_EQ(Tensor::empty({0}, DType::F32).to(gpu).numel(), 0);
}

TEST(CudaAllocator, PeakStatsAndEmptyCache) {
  TG_REQUIRE_GPU();
  Device gpu = test::gpu();
  cuda_reset_peak_stats(gpu);
  CudaMemoryStats s0 = cuda_memory_stats(gpu);
  EXPECT_EQ(s0.peak_allocated_bytes, s0.allocated_bytes);
  EXPECT_EQ(s0.peak_reserved_bytes, s0.reserved_bytes);
  {
    Tensor a = Tensor::zeros({int64_t(16) << 20}, DType::F32, gpu);  // 64 MiB
    EXPECT_GE(cuda_memory_stats(gpu).peak_allocated_bytes, s0.allocated_bytes + (size_t(64) << 20));
  }
  CudaMemoryStats s1 = cuda_memory_stats(gpu);
  EXPECT_EQ(s1.allocated_bytes, s0.allocated_bytes);
  EXPECT_GE(s1.peak_allocated_bytes, s0.allocated_bytes + (size_t(64) << 20));  // the peak remembers
  EXPECT_GE(s1.peak_reserved_bytes, s1.reserved_bytes);
  EXPECT_GE(s1.reserved_bytes, s1.allocated_bytes + (size_t(64) << 20));        // the block is cached
  std::string summary = cuda_memory_summary(gpu);
  EXPECT_NE(summary.find("cuda:0 peak "), std::string::npos) << summary;
  EXPECT_NE(summary.find("reserved"), std::string::npos) << summary;
  EXPECT_NE(summary.find("cudaMalloc call"), std::string::npos) << summary;
  cuda_reset_peak_stats(gpu);
  EXPECT_EQ(cuda_memory_stats(gpu).peak_allocated_bytes, s1.allocated_bytes);
  cuda_empty_cache(gpu);
  CudaMemoryStats s2 = cuda_memory_stats(gpu);
  EXPECT_EQ(s2.reserved_bytes, s2.allocated_bytes);  // nothing cached any more
  EXPECT_EQ(s2.allocated_bytes, s1.allocated_bytes);
}

TEST(CudaAllocator, OutOfMemoryNamesTheRequestAndTheFreeMemory) {
  TG_REQUIRE_GPU();
  EXPECT_ERROR_MENTIONS(Tensor::empty({int64_t(1) << 50}, DType::U8, test::gpu()), "CUDA out of memory on cuda:0",
                        "tried to allocate 1.00 PiB", "free of", "tilegrad holds", "reserved");
  // The failed cudaMalloc leaves no error behind for the next launch check to report.
  EXPECT_EQ(Tensor::full({1000}, 3.0f, DType::F32, test::gpu()).to_vector(), std::vector<float>(1000, 3.0f));
  EXPECT_EQ(Tensor::ones({10, 3}, DType::F32, test::gpu()).transpose(0, 1).contiguous().to(DType::BF16).to_vector(),
            std::vector<float>(30, 1.0f));
}

TEST(CudaDevice, MissingDeviceIndexNamesTheIndexAndTheCount) {
  TG_REQUIRE_GPU();
  int n = cuda_device_count();
  std::string missing = "cuda:" + std::to_string(n);
  EXPECT_ERROR_MENTIONS(set_device(Device::cuda(n)), missing, std::to_string(n) + " CUDA device");
  EXPECT_ERROR_MENTIONS(Tensor::zeros({2}, DType::F32, Device::cuda(n)), missing);
  EXPECT_ERROR_MENTIONS(Tensor::zeros({2}).to(Device::cuda(n)), missing);
  set_device(test::gpu());
  EXPECT_NE(cuda_status().find("sm_"), std::string::npos) << cuda_status();
}

// ---- CPU-runnable tests ----------------------------------------------------------------------

TEST(CudaDevice, StatusIsNonEmptyAndAgreesWithAvailability) {
  std::string status = cuda_status();
  EXPECT_FALSE(status.empty());
  if (cuda_available()) {
    EXPECT_GT(cuda_device_count(), 0);
    EXPECT_NE(status.find(cuda_device_count() == 1 ? "1 device: " : " devices: "), std::string::npos) << status;
  } else {
    EXPECT_EQ(cuda_device_count(), 0);
    EXPECT_TRUE(status.find("no CUDA device") != std::string::npos || status.find("without CUDA") != std::string::npos)
        << status;
  }
}

TEST(CudaDevice, WithoutAGpuCudaTensorsNameTheDeviceAndTheReason) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present (" << cuda_status() << ")";
  EXPECT_ERROR_MENTIONS(Tensor::zeros({2}, DType::F32, Device::cuda()), "cuda:0", cuda_status());
  EXPECT_ERROR_MENTIONS(Tensor::ones({2}).to(Device::cuda()), "cuda:0", cuda_status());
  EXPECT_ERROR_MENTIONS(Tensor::randn({2}, nullptr, DType::F32, Device::cuda(1)), "cuda:1", cuda_status());
  EXPECT_ERROR_MENTIONS(set_device(Device::cuda()), "cuda:0", cuda_status());
  EXPECT_ERROR_MENTIONS(cuda_memory_stats(Device::cuda()), "cuda:0", cuda_status());
  set_device(Device::cpu());  // a no-op on any machine
}

TEST(CudaDevice, ParseDevice) {
  EXPECT_EQ(parse_device("cpu"), Device::cpu());
  EXPECT_EQ(parse_device("cuda"), Device::cuda(0));
  EXPECT_EQ(parse_device("cuda:3"), Device::cuda(3));
  EXPECT_EQ(parse_device("cuda:3").str(), "cuda:3");
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CUDA", "cuda:99999999999"})
    EXPECT_THROW_WITH(parse_device(bad), std::string("unknown device '") + bad + "'");
}

TEST(CudaAllocator, FormatsBytesWithThreeSignificantDigits) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(size_t(2) << 30), "2.00 GiB");
  EXPECT_EQ(format_bytes(static_cast<size_t>(79.1 * (1 << 30))), "79.1 GiB");
  EXPECT_EQ(format_bytes(size_t(412) << 20), "412 MiB");
  EXPECT_EQ(format_bytes(size_t(1) << 50), "1.00 PiB");
}

// The conversion contract both devices share (tensor/copy.cpp, tensor/cuda_copy.cu): floats to
// integers truncate toward zero, saturate at the type's limits, and NaN becomes 0.
TEST(CudaCopy, FloatToIntegerTruncatesAndSaturates) {
  float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  Tensor x = Tensor::from_vector({nan, inf, -inf, 1e10f, -1e10f, 2.9f, -2.9f, 300.0f, -5.0f, 255.5f, 0.5f}, {11});
  EXPECT_EQ(x.to(DType::I32).to_int_vector(),
            (std::vector<int32_t>{0, INT32_MAX, INT32_MIN, INT32_MAX, INT32_MIN, 2, -2, 300, -5, 255, 0}));
  EXPECT_EQ(x.to(DType::U8).to_int_vector(), (std::vector<int32_t>{0, 255, 0, 255, 0, 2, 0, 255, 0, 255, 0}));
  // Integers to integers: u8 -> i32 exact, i32 -> u8 saturates.
  Tensor ids = Tensor::from_ints({-3, 0, 77, 255, 256, 1 << 30}, {6});
  EXPECT_EQ(ids.to(DType::U8).to_int_vector(), (std::vector<int32_t>{0, 0, 77, 255, 255, 255}));
}

TEST(CudaCopyIndexing, IntDividerMatchesIntegerDivision) {
  Generator gen(7);
  std::vector<uint32_t> divisors;
  for (uint32_t d = 1; d <= 1000; d++) divisors.push_back(d);
  for (int k = 1; k <= 31; k++) {
    uint32_t p = uint32_t(1) << k;
    divisors.push_back(p);
    divisors.push_back(p - 1);
    if (k < 31) divisors.push_back(p + 1);
  }
  for (int i = 0; i < 2000; i++) divisors.push_back(1 + static_cast<uint32_t>(gen.below(uint64_t(1) << 31)));
  const uint32_t kMaxN = INT32_MAX;  // the contract: n < 2^31
  int64_t checked = 0, wrong = 0;
  for (uint32_t d : divisors) {
    cuda::IntDivider div(d);
    std::vector<uint32_t> ns = {0, 1, d - 1, d, kMaxN, kMaxN - 1, kMaxN - kMaxN % d, kMaxN - kMaxN % d - 1};
    if (d < kMaxN / 2) ns.push_back(d + 1), ns.push_back(2 * d - 1), ns.push_back(2 * d);
    for (int i = 0; i < 300; i++) ns.push_back(static_cast<uint32_t>(gen.below(uint64_t(1) << 31)));
    for (int i = 0; i < 50; i++) {  // just below and at multiples of d
      uint64_t q = gen.below(kMaxN / d + 1);
      if (q * d < kMaxN) ns.push_back(static_cast<uint32_t>(q * d));
      if (q * d >= 1 && q * d - 1 < kMaxN) ns.push_back(static_cast<uint32_t>(q * d - 1));
    }
    for (uint32_t n : ns) {
      if (n > kMaxN) continue;
      checked++;
      if (div.div(n) != n / d && wrong++ < 5) ADD_FAILURE() << n << " / " << d << ": got " << div.div(n) << ", want " << n / d;
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_GT(checked, 1000000);
}

// Walks every index of `shape` and collects the (dst offset, src offset) pairs: the mapping a copy
// performs. Merging and reordering dims must leave it unchanged.
static std::multiset<std::pair<int64_t, int64_t>> offset_pairs(const Shape& shape, const Shape& ds, const Shape& ss) {
  std::multiset<std::pair<int64_t, int64_t>> pairs;
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  for (int64_t i = 0; i < n; i++) {
    int64_t rem = i, d = 0, s = 0;
    for (size_t k = shape.size(); k-- > 0;) {
      d += (rem % shape[k]) * ds[k];
      s += (rem % shape[k]) * ss[k];
      rem /= shape[k];
    }
    pairs.emplace(d, s);
  }
  return pairs;
}

TEST(CudaCopyIndexing, MergeCopyDimsKeepsTheElementMapping) {
  using cuda::merge_copy_dims;
  // Contiguous pairs collapse to one run; so do pairs permuted the same way (after ordering by the
  // destination's strides); size-1 dims disappear; a scalar becomes one element.
  cuda::CopyDims c = merge_copy_dims({2, 3, 4}, {12, 4, 1}, {12, 4, 1});
  EXPECT_EQ(c.size, (Shape{24}));
  EXPECT_EQ(c.dst_stride, (Shape{1}));
  cuda::CopyDims t = merge_copy_dims({4, 3}, {1, 4}, {1, 4});
  EXPECT_EQ(t.size, (Shape{12}));
  EXPECT_EQ(t.src_stride, (Shape{1}));
  cuda::CopyDims one = merge_copy_dims({1, 5, 1}, {5, 1, 1}, {99, 2, 7});
  EXPECT_EQ(one.size, (Shape{5}));
  EXPECT_EQ(one.src_stride, (Shape{2}));
  EXPECT_EQ(merge_copy_dims({}, {}, {}).size, (Shape{1}));
  // A transposed source does not merge; an expanded one merges only where both strides allow.
  EXPECT_EQ(merge_copy_dims({3, 4}, {4, 1}, {1, 3}).ndim(), 2);
  cuda::CopyDims e = merge_copy_dims({5, 3, 4}, {12, 4, 1}, {0, 0, 1});
  EXPECT_EQ(e.size, (Shape{15, 4}));
  EXPECT_EQ(e.src_stride, (Shape{0, 1}));

  // The mapping is unchanged for views of every kind, with either tensor strided.
  Tensor base = Tensor::zeros({5, 33, 17});
  std::vector<std::pair<std::string, Tensor>> views = {
      {"transpose", base.transpose(1, 2)},  {"permute", base.permute({2, 0, 1})},
      {"step", base.slice(2, 1, 16, 3)},    {"expand", base.select(1, 7).unsqueeze(0).expand({4, 5, 17})},
      {"narrow", base.narrow(1, 3, 20)},    {"reversed", base.permute({2, 1, 0})},
  };
  for (const auto& [src_name, src] : views) {
    Tensor dst_plain = Tensor::zeros(src.shape());
    Tensor dst_transposed = Tensor::zeros({src.size(2), src.size(1), src.size(0)}).permute({2, 1, 0});
    for (const Tensor& dst : {dst_plain, dst_transposed}) {
      cuda::CopyDims m = merge_copy_dims(src.shape(), dst.strides(), src.strides());
      EXPECT_LE(m.ndim(), 3) << src_name;
      for (size_t k = 1; k < m.size.size(); k++) EXPECT_GE(m.dst_stride[k - 1], m.dst_stride[k]) << src_name;
      EXPECT_EQ(offset_pairs(m.size, m.dst_stride, m.src_stride), offset_pairs(src.shape(), dst.strides(), src.strides()))
          << src_name;
    }
  }
}
