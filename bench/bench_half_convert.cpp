// The 16-bit conversions of ops/cpu/half_convert.h, which every bf16/f16 CPU op runs around its
// f32 compute: whole arrays (a tensor's .to(dtype), the GEMM fronts' staging) and strided blocks
// of rows (bf16 attention's one head of a (B, T, 3C) tensor). All are memory-bound: each line
// prints the bytes moved (2 read + 4 written per value, or 4 + 2) over the best time, against the
// copy bandwidth measured in the same run. The block lines also time the same block converted a
// row per call, the cost the rows form exists to avoid. PyTorch's CPU .to(torch.bfloat16) and
// back on the same n is the peer: bench/torch/half_convert_cpu.py.
//
//   make bench && ./build/bench/bench_half_convert [n]
#include <omp.h>

#include <cstdio>
#include <functional>
#include <vector>

#include "bench/bench_common.h"
#include "ops/cpu/half_convert.h"
#include "tensor/dtype.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

using namespace tg;

namespace {

void report(const char* name, double bytes, double copy_gbs, const std::function<void()>& fn) {
  const bench::Timing t = bench::time_runs(fn, 20, 2);
  const double gbs = bytes / (t.best_ms * 1e6);
  std::printf("%-38s %9.3f ms %9.3f ms %8.1f GB/s %6.0f%%\n", name, t.best_ms, t.median_ms, gbs,
              100.0 * gbs / copy_gbs);
}

int run(int64_t n) {
  const double copy_gbs = bench::measured_copy_bandwidth_gbs();
  std::printf("SIMD: %s, OpenMP threads: %d, copy bandwidth (read + write): %.1f GB/s\n", bench::simd_name().c_str(),
              omp_get_max_threads(), copy_gbs);
  std::printf("%-38s %12s %12s %13s %7s\n", "conversion", "best", "median", "bandwidth", "% copy");

  // Tensors, not vectors: their storage is 64-byte aligned as every tensor's is (a large vector's
  // is 16 bytes past a page, and each 64-byte load then spans two cache lines).
  Generator gen(1);
  const Tensor f32 = Tensor::randn({n}, &gen), back = Tensor::empty({n});
  const double bytes = 6.0 * static_cast<double>(n);
  char name[64];
  for (DType dtype : {DType::BF16, DType::F16}) {
    const Tensor half = Tensor::empty({n}, dtype);
    uint16_t* half_data = static_cast<uint16_t*>(half.data_raw());
    std::snprintf(name, sizeof name, "f32 -> %s, n = %lld", dtype_name(dtype), static_cast<long long>(n));
    report(name, bytes, copy_gbs, [&] { cpu::convert_f32_to_half(dtype, f32.data<float>(), half_data, n); });
    std::snprintf(name, sizeof name, "%s -> f32, n = %lld", dtype_name(dtype), static_cast<long long>(n));
    report(name, bytes, copy_gbs, [&] { cpu::convert_half_to_f32(dtype, half_data, back.data<float>(), n); });
  }

  // bf16 attention's gather: one head's q, k or v (T rows of HS values, 3C apart) of every
  // (batch, head), in the small preset's shape, then the scatter of its output back. Each thread
  // converts whole blocks, as attention's parallel loop over (batch, head) does.
  const int64_t B = 64, T = 256, H = 6, HS = 64, C = H * HS;
  const Tensor qkv_tensor = Tensor::randn({B, T, 3 * C}, &gen).to(DType::BF16);
  const Tensor out_tensor = Tensor::empty({B, T, C}, DType::BF16);
  const uint16_t* qkv = static_cast<const uint16_t*>(qkv_tensor.data_raw());
  uint16_t* out = static_cast<uint16_t*>(out_tensor.data_raw());
  const int threads = omp_get_max_threads();
  std::vector<bench::AlignedVector<float>> block(static_cast<size_t>(threads),
                                                 bench::AlignedVector<float>(static_cast<size_t>(T * HS)));
  const double block_bytes = 6.0 * static_cast<double>(B * H * T * HS);
  auto each_head = [&](const std::function<void(int64_t b, int64_t h, float* dst)>& convert) {
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < B * H; bh++)
      convert(bh / H, bh % H, block[static_cast<size_t>(omp_get_thread_num())].data());
  };
  report("bf16 head gather, one call a block", block_bytes, copy_gbs, [&] {
    each_head([&](int64_t b, int64_t h, float* dst) {
      cpu::convert_half_to_f32_rows(DType::BF16, qkv + b * T * 3 * C + h * HS, 3 * C, dst, HS, T, HS);
    });
  });
  report("bf16 head gather, one call a row", block_bytes, copy_gbs, [&] {
    each_head([&](int64_t b, int64_t h, float* dst) {
      for (int64_t t = 0; t < T; t++)
        cpu::convert_half_to_f32(DType::BF16, qkv + (b * T + t) * 3 * C + h * HS, dst + t * HS, HS);
    });
  });
  report("bf16 head scatter, one call a block", block_bytes, copy_gbs, [&] {
    each_head([&](int64_t b, int64_t h, float* src) {
      cpu::convert_f32_to_half_rows(DType::BF16, src, HS, out + b * T * C + h * HS, C, T, HS);
    });
  });
  report("bf16 head scatter, one call a row", block_bytes, copy_gbs, [&] {
    each_head([&](int64_t b, int64_t h, float* src) {
      for (int64_t t = 0; t < T; t++)
        cpu::convert_f32_to_half(DType::BF16, src + t * HS, out + (b * T + t) * C + h * HS, HS);
    });
  });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = int64_t(64) << 20;
  FlagSet flags("bench_half_convert", "[n]",
                "The f32 <-> bf16/f16 conversions every 16-bit CPU op runs, whole arrays and attention's strided\n"
                "head blocks, in GB/s against the copy bandwidth measured in the same run.");
  flags.add_int_argument("n", &n, "values in the whole-array lines (far past the caches by default)", 16,
                         int64_t(1) << 32);
  return bench::run_main(flags, argc, argv, [&] { return run(n); });
}
