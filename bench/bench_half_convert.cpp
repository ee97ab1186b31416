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

  Generator gen(1);
  const size_t size = static_cast<size_t>(n);
  std::vector<float> f32(size), back(size);
  std::vector<uint16_t> bf16(size), f16(size);
  for (size_t i = 0; i < size; i++) f32[i] = gen.normal();
  const double bytes = 6.0 * static_cast<double>(n);
  char name[64];
  for (DType dtype : {DType::BF16, DType::F16}) {
    uint16_t* half = dtype == DType::BF16 ? bf16.data() : f16.data();
    std::snprintf(name, sizeof name, "f32 -> %s, n = %lld", dtype_name(dtype), static_cast<long long>(n));
    report(name, bytes, copy_gbs, [&] { cpu::convert_f32_to_half(dtype, f32.data(), half, n); });
    std::snprintf(name, sizeof name, "%s -> f32, n = %lld", dtype_name(dtype), static_cast<long long>(n));
    report(name, bytes, copy_gbs, [&] { cpu::convert_half_to_f32(dtype, half, back.data(), n); });
  }

  // bf16 attention's gather: one head's q, k or v (T rows of HS values, 3C apart) of every
  // (batch, head), in the small preset's shape, then the scatter of its output back. Each thread
  // converts whole blocks, as attention's parallel loop over (batch, head) does.
  const int64_t B = 64, T = 256, H = 6, HS = 64, C = H * HS;
  std::vector<uint16_t> qkv(static_cast<size_t>(B * T * 3 * C)), out(static_cast<size_t>(B * T * C));
  for (size_t i = 0; i < qkv.size(); i++) qkv[i] = f32_to_bf16(gen.normal());
  const int threads = omp_get_max_threads();
  std::vector<std::vector<float>> block(static_cast<size_t>(threads), std::vector<float>(static_cast<size_t>(T * HS)));
  const double block_bytes = 6.0 * static_cast<double>(B * H * T * HS);
  auto each_head = [&](const std::function<void(int64_t b, int64_t h, float* dst)>& convert) {
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < B * H; bh++) convert(bh / H, bh % H, block[static_cast<size_t>(omp_get_thread_num())].data());
  };
  report("bf16 head gather, one call a block", block_bytes, copy_gbs, [&] {
    each_head([&](int64_t b, int64_t h, float* dst) {
      cpu::convert_half_to_f32_rows(DType::BF16, qkv.data() + b * T * 3 * C + h * HS, 3 * C, dst, HS, T, HS);
    });
  });
  report("bf16 head gather, one call a row", block_bytes, copy_gbs, [&] {
    each_head([&](int64_t b, int64_t h, float* dst) {
      for (int64_t t = 0; t < T; t++)
        cpu::convert_half_to_f32(DType::BF16, qkv.data() + (b * T + t) * 3 * C + h * HS, dst + t * HS, HS);
    });
  });
  report("bf16 head scatter, one call a block", block_bytes, copy_gbs, [&] {
    each_head([&](int64_t b, int64_t h, float* src) {
      cpu::convert_f32_to_half_rows(DType::BF16, src, HS, out.data() + b * T * C + h * HS, C, T, HS);
    });
  });
  report("bf16 head scatter, one call a row", block_bytes, copy_gbs, [&] {
    each_head([&](int64_t b, int64_t h, float* src) {
      for (int64_t t = 0; t < T; t++)
        cpu::convert_f32_to_half(DType::BF16, src + t * HS, out.data() + (b * T + t) * C + h * HS, HS);
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
