#include "ops/cpu/conv2d_pack.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace tg::cpu {

namespace {

// dst[0:n] = src[0:n] (or zeros when src is null). Inline and vector-wide: the runs are short
// (one pixel's channels, often 3 to 128 floats), where a call to memcpy costs more than the copy.
inline void copy_run(float* dst, const float* src, int64_t n) {
#if defined(__AVX512F__)
  int64_t j = 0;
  if (src) {
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(dst + j, _mm512_loadu_ps(src + j));
    if (j < n) {
      const __mmask16 mask = static_cast<__mmask16>((1u << (n - j)) - 1);
      _mm512_mask_storeu_ps(dst + j, mask, _mm512_maskz_loadu_ps(mask, src + j));
    }
  } else {
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(dst + j, _mm512_setzero_ps());
    if (j < n) _mm512_mask_storeu_ps(dst + j, static_cast<__mmask16>((1u << (n - j)) - 1), _mm512_setzero_ps());
  }
#else
  if (src) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
  else std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
#endif
}

// A per-thread scratch buffer of at least n floats, kept between calls.
float* scratch(int64_t n) {
  static thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

}  // namespace

void gather_patch_row(const float* x, const Conv2dGeometry& g, int64_t group, int64_t pixel, int64_t col0,
                      int64_t ncols, float* dst) {
  const int64_t Cg = g.channels_per_group(), PQ = g.P * g.Q;
  const int64_t n = pixel / PQ, p = pixel % PQ / g.Q, q = pixel % g.Q;
  const int64_t h0 = p * g.stride_h - g.pad_h, w0 = q * g.stride_w - g.pad_w;
  const float* image = x + n * g.H * g.W * g.C + group * Cg;
  // Neighbouring kernel columns s are neighbouring pixels in memory (one run) when they hold all C
  // channels and are one pixel apart.
  const bool s_runs_join = Cg == g.C && g.dilation_w == 1;
  const int64_t end = col0 + ncols;
  for (int64_t col = col0; col < end;) {
    const int64_t rs = col / Cg, c = col - rs * Cg, r = rs / g.S, s = rs % g.S;
    const int64_t h = h0 + r * g.dilation_h, w = w0 + s * g.dilation_w;
    int64_t run_end;  // exclusive column where this run stops
    const float* src = nullptr;
    if (h < 0 || h >= g.H) {
      run_end = (r + 1) * g.S * Cg;  // the whole kernel row r is padding
    } else if (w < 0 || w >= g.W) {
      run_end = (rs + 1) * Cg;
    } else {
      src = image + (h * g.W + w) * g.C + c;
      // With joined runs, continue through the kernel columns s' whose pixel w0 + s' is inside.
      run_end = s_runs_join ? (r * g.S + std::min(g.S, g.W - w0)) * Cg : (rs + 1) * Cg;
    }
    const int64_t len = std::min(run_end, end) - col;
    copy_run(dst + (col - col0), src, len);
    col += len;
  }
}

void PatchPackA::pack(int64_t i0, int64_t m, int64_t p0, int64_t k, float* a_pack) const {
  // rows (MR, k): the sliver's patch rows, gathered contiguously so that the transpose into the
  // k-major sliver runs on whole 16 x 16 blocks whatever Cg is.
  float* rows = scratch(kGemmMR * k);
  for (int64_t s0 = 0; s0 < m; s0 += kGemmMR) {
    const int64_t count = std::min<int64_t>(kGemmMR, m - s0);
    const float* row_ptrs[kGemmMR];
    for (int64_t r = 0; r < kGemmMR; r++) {
      if (r < count) {
        gather_patch_row(x_, g_, group_, i0 + s0 + r, p0, k, rows + r * k);
        row_ptrs[r] = rows + r * k;
      } else {
        row_ptrs[r] = nullptr;  // past the last row: zeros
      }
    }
    pack_a_rows(row_ptrs, k, a_pack + s0 * k);
  }
}

void PatchTransposePackA::pack(int64_t i0, int64_t m, int64_t p0, int64_t k, float* a_pack) const {
  // Here the pack's rows are patch columns and its k is pixels: sliver t, step pp holds patch
  // columns i0 + t*MR .. of pixel p0 + pp, MR floats in a row. Gather the pixel's patch segment
  // (m floats) once, then deal it out in MR-wide pieces.
  const int64_t full = m / kGemmMR * kGemmMR;
  float* row = scratch(m + kGemmMR);
  std::fill(row + m, row + full + kGemmMR, 0.0f);  // zero rows of the last, partial sliver
  for (int64_t pp = 0; pp < k; pp++) {
    gather_patch_row(x_, g_, group_, p0 + pp, i0, m, row);
    for (int64_t t0 = 0; t0 < m; t0 += kGemmMR)
      std::memcpy(a_pack + t0 * k + pp * kGemmMR, row + t0, sizeof(float) * kGemmMR);
  }
}

}  // namespace tg::cpu
