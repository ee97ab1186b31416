// The bf16 peak probe of machine_peak.h, built with the AVX512_BF16 flags (Makefile: *_avx512bf16).
#include <immintrin.h>

#include "programs/lib/machine_peak.h"

namespace tg {

// Sixteen independent vdpbf16ps chains, enough to cover its latency on both of Zen 5's 512-bit
// pipes. The accumulators grow by about 2e-7 * 2 per round, so they stay finite and normal.
double bf16_dot_flops_avx512bf16(long iterations) {
  constexpr int kChains = 16;
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f7f);  // 0.996 in every bf16
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3400);  // 1.2e-7
  __m512 acc[kChains];
  for (int c = 0; c < kChains; c++) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  for (long i = 0; i < iterations; i++)
    for (int c = 0; c < kChains; c++) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  float sink = 0, lanes[16];
  for (int c = 0; c < kChains; c++) {
    _mm512_storeu_ps(lanes, acc[c]);
    for (float v : lanes) sink += v;
  }
  volatile float keep = sink;  // keeps the chains from being optimised away
  (void)keep;
  return 64.0 * kChains * static_cast<double>(iterations);  // 16 lanes x 2 products x 2 flops
}

}  // namespace tg
