#include "programs/lib/machine_peak.h"

#include <omp.h>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <chrono>

#include "ops/cpu/gemm_bf16.h"

namespace tg {

// Twelve chains so the FMA units never wait on a result (latency 4 cycles x 2 units needs 8).
static double fma_flops(long iterations) {
  constexpr int kChains = 12;
  float sink = 0;
#if defined(__AVX512F__)
  constexpr int kLanes = 16;
  __m512 acc[kChains], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int c = 0; c < kChains; c++) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (long i = 0; i < iterations; i++)
    for (int c = 0; c < kChains; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  float lanes[16];
  for (int c = 0; c < kChains; c++) { _mm512_storeu_ps(lanes, acc[c]); for (float v : lanes) sink += v; }
#elif defined(__AVX2__)
  constexpr int kLanes = 8;
  __m256 acc[kChains], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int c = 0; c < kChains; c++) acc[c] = _mm256_set1_ps(static_cast<float>(c));
  for (long i = 0; i < iterations; i++)
    for (int c = 0; c < kChains; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  float lanes[8];
  for (int c = 0; c < kChains; c++) { _mm256_storeu_ps(lanes, acc[c]); for (float v : lanes) sink += v; }
#else
  constexpr int kLanes = 1;
  float acc[kChains];
  for (int c = 0; c < kChains; c++) acc[c] = static_cast<float>(c);
  for (long i = 0; i < iterations; i++)
    for (int c = 0; c < kChains; c++) acc[c] = acc[c] * 0.999999f + 1e-7f;
  for (int c = 0; c < kChains; c++) sink += acc[c];
#endif
  volatile float keep = sink;  // keeps the chains from being optimised away
  (void)keep;
  return 2.0 * kLanes * kChains * static_cast<double>(iterations);
}

// The best of three timed runs of `flops_of(iterations)` on every thread at once, in GFLOP/s.
template <typename Fn>
static double best_gflops(int threads, long iterations, Fn flops_of) {
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    double flops = 0;
    auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += flops_of(iterations);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 0 && flops / seconds > best) best = flops / seconds;
  }
  return best / 1e9;
}

double cpu_peak_gflops(int threads, long iterations) { return best_gflops(threads, iterations, fma_flops); }

double cpu_bf16_peak_gflops(int threads, long iterations) {
  if (!cpu::cpu_has_avx512_bf16()) return 0;
  return best_gflops(threads, iterations, bf16_dot_flops_avx512bf16);
}

}  // namespace tg
