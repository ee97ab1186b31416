// The 16 x 16 in-register transpose that the f32 and bf16 GEMMs' packers share. Include it only
// from code compiled with AVX-512 (gemm.cpp's avx512 level, the AVX512_BF16 kernel file).
// It has internal linkage (static), so each object keeps its own copy, built with that object's
// instructions: no copy can be picked for code of another instruction-set level.
#pragma once

#include <immintrin.h>

namespace tg::cpu {

// In-register transpose of a 16 x 16 float block: v[r] holds row r on entry, column r on exit.
// Packing uses it wherever the source runs along k but the pack wants k-major (A stored (M,K),
// B stored (N,K)): 64 shuffles per 256 floats instead of 256 scattered scalar stores.
// (The maskz forms with an all-ones mask compile to the plain instructions; the plain intrinsics
// trip gcc 12's -Wuninitialized through their undefined pass-through operand.)
static inline void transpose16x16(__m512 v[16]) {
  constexpr __mmask16 kAll = 0xffff;
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_maskz_unpacklo_ps(kAll, v[i], v[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, v[i], v[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    v[i] = _mm512_maskz_shuffle_ps(kAll, t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    v[i + 1] = _mm512_maskz_shuffle_ps(kAll, t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    v[i + 2] = _mm512_maskz_shuffle_ps(kAll, t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    v[i + 3] = _mm512_maskz_shuffle_ps(kAll, t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_maskz_shuffle_f32x4(kAll, v[i], v[i + 4], 0x88);
    t[i + 4] = _mm512_maskz_shuffle_f32x4(kAll, v[i], v[i + 4], 0xdd);
    t[i + 8] = _mm512_maskz_shuffle_f32x4(kAll, v[i + 8], v[i + 12], 0x88);
    t[i + 12] = _mm512_maskz_shuffle_f32x4(kAll, v[i + 8], v[i + 12], 0xdd);
  }
  for (int i = 0; i < 4; i++) {
    v[i] = _mm512_maskz_shuffle_f32x4(kAll, t[i], t[i + 8], 0x88);
    v[i + 8] = _mm512_maskz_shuffle_f32x4(kAll, t[i], t[i + 8], 0xdd);
    v[i + 4] = _mm512_maskz_shuffle_f32x4(kAll, t[i + 4], t[i + 12], 0x88);
    v[i + 12] = _mm512_maskz_shuffle_f32x4(kAll, t[i + 4], t[i + 12], 0xdd);
  }
}

}  // namespace tg::cpu
