// Array conversions between f32 and the 16-bit floats (bf16, f16) for the CPU kernels that store
// half precision and compute in f32: widen what they load, round once what they store.
//
// Bit for bit tg::f32_to_bf16 / f32_to_f16 and their inverses (tensor/half_bits.h, which the CUDA
// kernels also compile): round to nearest even, NaN kept a quiet NaN with the scalar converters'
// exact bits, overflow to infinity, f16 subnormals kept. tests/test_half_convert.cpp checks every
// 16-bit pattern and the f32 edge cases at every instruction-set level.
//
// Inline, so each kernel file compiles them at its own level (ops/cpu/isa.h): with AVX-512 they run
// 16 lanes (f16 through vcvtph2ps/vcvtps2ph, exact and round-to-nearest-even in hardware; bf16 in
// integer SIMD, since vcvtneps2bf16 needs AVX512_BF16 and flushes subnormals); below AVX-512 they
// are the scalar converters in a loop.
#pragma once
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "ops/cpu/isa.h"
#include "tensor/dtype.h"
#include "tensor/half_bits.h"

// gcc 12 warns "__Y may be used uninitialized" inside its own AVX-512 headers when the unmasked
// intrinsics below inline (their pass-through operand is _mm512_undefined_*()); a known false
// positive, silenced for these functions only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace tg::cpu {

// dst[i] = the f32 value of the bf16 bits src[i], i < n. Exact.
inline void bf16_to_f32_array(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
#endif
  for (; i < n; i++) dst[i] = bf16_bits_to_f32(src[i]);
}

// dst[i] = src[i] rounded to bf16 bits, i < n: f32_to_bf16_bits lane by lane.
inline void f32_to_bf16_array(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x0040);
  for (; i + 16 <= n; i += 16) {
    __m512i x = _mm512_castps_si512(_mm512_loadu_ps(src + i));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), one);
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(bias, lsb)), 16);
    // NaN (|x| above the infinity pattern, unsigned): the top half with the quiet bit set.
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs_mask), inf);
    __m512i nan_bits = _mm512_or_si512(_mm512_srli_epi32(x, 16), quiet);
    __m512i bits = _mm512_mask_mov_epi32(rounded, nan, nan_bits);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm512_cvtepi32_epi16(bits));
  }
#endif
  for (; i < n; i++) dst[i] = f32_to_bf16_bits(src[i]);
}

// dst[i] = the f32 value of the f16 bits src[i], i < n. Exact.
inline void f16_to_f32_array(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    __m512 v = _mm512_cvtph_ps(half);
    // The hardware quiets a signalling NaN; the scalar converter keeps its bits (sign, all-ones
    // exponent, the payload moved up), so NaN lanes are rebuilt that way.
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    __m512i h = _mm512_cvtepu16_epi32(half);
    __m512i kept = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(h, _mm512_set1_epi32(0x8000)), 16),
                                   _mm512_or_si512(_mm512_set1_epi32(0x7f800000),
                                                   _mm512_slli_epi32(_mm512_and_si512(h, _mm512_set1_epi32(0x3ff)), 13)));
    _mm512_storeu_ps(dst + i, _mm512_mask_mov_ps(v, nan, _mm512_castsi512_ps(kept)));
  }
#endif
  for (; i < n; i++) dst[i] = f16_bits_to_f32(src[i]);
}

// dst[i] = src[i] rounded to f16 bits, i < n: f32_to_f16_bits lane by lane.
inline void f32_to_f16_array(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(src + i);
    __m256i half = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // The hardware keeps a NaN's payload; the scalar converter (and the CUDA kernels) write the
    // canonical sign | 0x7e00, so NaN lanes are replaced with that.
    __m512i x = _mm512_castps_si512(v);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(x, abs_mask), inf);
    __m256i canonical =
        _mm512_cvtepi32_epi16(_mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(0x8000)),
                                              _mm512_set1_epi32(0x7e00)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_mask_mov_epi16(half, nan, canonical));
  }
#endif
  for (; i < n; i++) dst[i] = f32_to_f16_bits(src[i]);
}

// The two 16-bit dtypes behind one call: `dtype` is DType::BF16 or DType::F16.
inline void half_to_f32_array(DType dtype, const uint16_t* src, float* dst, int64_t n) {
  if (dtype == DType::BF16)
    bf16_to_f32_array(src, dst, n);
  else
    f16_to_f32_array(src, dst, n);
}

inline void f32_to_half_array(DType dtype, const float* src, uint16_t* dst, int64_t n) {
  if (dtype == DType::BF16)
    f32_to_bf16_array(src, dst, n);
  else
    f32_to_f16_array(src, dst, n);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

TG_CPU_ISA_BEGIN

// Whole-array conversions for the fronts and tensor conversions: the functions above at the active
// level, split over the OpenMP threads when n is large. `dtype` is DType::BF16 or DType::F16.
void convert_half_to_f32(DType dtype, const uint16_t* src, float* dst, int64_t n);
void convert_f32_to_half(DType dtype, const float* src, uint16_t* dst, int64_t n);

// The same on a block of `rows` rows of `cols` values, the source's rows src_stride values apart
// and the destination's dst_stride: one call for a strided block (one head's columns of a (B, T,
// 3C) tensor, T rows of HS) where a call per row would cost more than its 64 values' conversion.
// On the calling thread: its callers convert many blocks inside their own parallel loops.
void convert_half_to_f32_rows(DType dtype, const uint16_t* src, int64_t src_stride, float* dst, int64_t dst_stride,
                              int64_t rows, int64_t cols);
void convert_f32_to_half_rows(DType dtype, const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride,
                              int64_t rows, int64_t cols);

TG_CPU_ISA_END
}  // namespace tg::cpu
