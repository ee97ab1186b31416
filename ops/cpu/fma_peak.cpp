#include "ops/cpu/fma_peak.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// Twelve chains so the FMA units never wait on a result (latency 4 cycles x 2 units needs 8).
double fma_chains(long iterations) {
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
  // Baseline x86-64 has no FMA: a multiply and an add per step, counted as the 2 FLOPs they are.
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

TG_CPU_ISA_END
}  // namespace tg::cpu
