#include "bench/bench_common.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "tensor/tensor.h"

namespace tg::bench {

double time_ms(const std::function<void()>& fn, int repeats, int warmup) {
  for (int i = 0; i < warmup; i++) fn();
  std::vector<double> times;
  for (int i = 0; i < repeats; i++) {
    auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::string simd_name() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#else
  return "scalar";
#endif
}

// Each thread runs kChains independent FMA chains so the FMA units never wait on a result
// (latency 4 cycles x 2 units needs at least 8 chains in flight).
static double fma_flops_one_thread(long iterations) {
  constexpr int kChains = 12;
#if defined(__AVX512F__)
  using V = __m512;
  constexpr int kLanes = 16;
  V acc[kChains], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int c = 0; c < kChains; c++) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (long i = 0; i < iterations; i++)
    for (int c = 0; c < kChains; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  // Stored and summed by hand: gcc 12's _mm512_reduce_add_ps trips -Wuninitialized.
  float tmp[16], sink = 0;
  for (int c = 0; c < kChains; c++) { _mm512_storeu_ps(tmp, acc[c]); for (float t : tmp) sink += t; }
#elif defined(__AVX2__)
  using V = __m256;
  constexpr int kLanes = 8;
  V acc[kChains], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int c = 0; c < kChains; c++) acc[c] = _mm256_set1_ps(static_cast<float>(c));
  for (long i = 0; i < iterations; i++)
    for (int c = 0; c < kChains; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  float tmp[8], sink = 0;
  for (int c = 0; c < kChains; c++) { _mm256_storeu_ps(tmp, acc[c]); for (float t : tmp) sink += t; }
#else
  constexpr int kLanes = 1;
  float acc[kChains], sink = 0;
  for (int c = 0; c < kChains; c++) acc[c] = static_cast<float>(c);
  for (long i = 0; i < iterations; i++)
    for (int c = 0; c < kChains; c++) acc[c] = acc[c] * 0.999999f + 1e-7f;
  for (int c = 0; c < kChains; c++) sink += acc[c];
#endif
  volatile float keep = sink;  // keeps the chains from being optimised away
  (void)keep;
  return 2.0 * kLanes * kChains * static_cast<double>(iterations);
}

double measured_fma_peak_gflops(int threads) {
  static double cached[256] = {0};
  int n = threads > 0 ? threads : omp_get_max_threads();
  if (n < 256 && cached[n] > 0) return cached[n];
  const long iterations = 20000000;
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    double flops = 0;
    auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(n) reduction(+ : flops)
    flops += fma_flops_one_thread(iterations);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, flops / seconds * 1e-9);
  }
  if (n < 256) cached[n] = best;
  return best;
}

double measured_copy_bandwidth_gbs() {
  static double cached = 0;
  if (cached > 0) return cached;
  const size_t n = size_t(64) << 20;  // 256 MB per buffer: far past any last-level cache here
  Tensor src = Tensor::full({static_cast<int64_t>(n)}, 1.0f), dst = Tensor::zeros({static_cast<int64_t>(n)});
  float* d = dst.data<float>();
  const float* s = src.data<float>();
  double ms = time_ms([&] {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) d[i] = s[i];
  }, 7, 2);
  cached = 2.0 * n * sizeof(float) / (ms * 1e-3) * 1e-9;
  return cached;
}

}  // namespace tg::bench
