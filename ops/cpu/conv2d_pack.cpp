#include "ops/cpu/conv2d_pack.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace tg::cpu {
TG_CPU_ISA_BEGIN

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

// One piece of a patch-row segment: channels c .. c+len of kernel tap (r, s), the segment's next
// len columns. It reads input pixel (h0 + dh, w0 + dw) of a window whose top-left is (h0, w0), at
// `offset` floats from that top-left pixel's first channel of the group.
struct Tap {
  int64_t dh, dw, offset, len;
};

// The taps of columns [col0, col0 + ncols), in column order, and the same columns as runs that are
// contiguous in x when the whole window lies inside the image (neighbouring taps whose sources
// follow each other, merged: all S taps of a kernel row when groups == 1 and dilation_w == 1).
struct Taps {
  std::vector<Tap> taps, interior_runs;
};

// In a per-thread buffer.
const Taps& taps_of(const Conv2dGeometry& g, int64_t col0, int64_t ncols) {
  static thread_local Taps t;
  t.taps.clear();
  t.interior_runs.clear();
  const int64_t Cg = g.channels_per_group();
  for (int64_t col = col0; col < col0 + ncols;) {
    const int64_t rs = col / Cg, c = col - rs * Cg, r = rs / g.S, s = rs % g.S;
    const int64_t len = std::min(Cg - c, col0 + ncols - col);
    const int64_t dh = r * g.dilation_h, dw = s * g.dilation_w;
    const Tap tap{dh, dw, (dh * g.W + dw) * g.C + c, len};
    t.taps.push_back(tap);
    Tap* last = t.interior_runs.empty() ? nullptr : &t.interior_runs.back();
    if (last && last->offset + last->len == tap.offset) last->len += len;
    else t.interior_runs.push_back(tap);
    col += len;
  }
  return t;
}

// One output pixel's window: its image (x at (n, 0, 0, group*Cg)) and the top-left input position
// (h0, w0) of its R x S window (negative in the padding).
struct PixelPosition {
  const float* image = nullptr;
  int64_t h0 = 0, w0 = 0;
};

// Where tap t of the window at `at` reads x, or null in the padding.
inline const float* tap_source(const PixelPosition& at, const Tap& t, const Conv2dGeometry& g) {
  const int64_t h = at.h0 + t.dh, w = at.w0 + t.dw;
  return h >= 0 && h < g.H && w >= 0 && w < g.W ? at.image + (at.h0 * g.W + at.w0) * g.C + t.offset : nullptr;
}

// Walks output pixels in order. Divides once, then steps.
struct PixelWalker {
  const Conv2dGeometry& g;
  PixelPosition position;
  int64_t p, q;
  PixelWalker(const float* x, const Conv2dGeometry& geo, int64_t group, int64_t pixel) : g(geo) {
    const int64_t n = pixel / (g.P * g.Q);
    p = pixel % (g.P * g.Q) / g.Q, q = pixel % g.Q;
    position.image = x + n * g.H * g.W * g.C + group * g.channels_per_group();
    position.h0 = p * g.stride_h - g.pad_h, position.w0 = q * g.stride_w - g.pad_w;
  }
  void next() {
    position.w0 += g.stride_w;
    if (++q < g.Q) return;
    q = 0, position.w0 = -g.pad_w, position.h0 += g.stride_h;
    if (++p < g.P) return;
    p = 0, position.h0 = -g.pad_h, position.image += g.H * g.W * g.C;
  }
  // The pixel's patch-row segment described by `t` -> dst. Inside the image the precomputed runs
  // are copied as they are; at the border each tap is checked, and neighbouring pieces whose
  // sources are contiguous in memory (or both padding) are still copied as one run.
  void gather(const Taps& t, float* dst) const {
    const PixelPosition& at = position;
    if (at.h0 >= 0 && at.h0 + (g.R - 1) * g.dilation_h < g.H && at.w0 >= 0 &&
        at.w0 + (g.S - 1) * g.dilation_w < g.W) {
      const float* origin = at.image + (at.h0 * g.W + at.w0) * g.C;
      for (const Tap& run : t.interior_runs) {
        copy_run(dst, origin + run.offset, run.len);
        dst += run.len;
      }
      return;
    }
    const float* run_src = nullptr;
    int64_t run_len = 0;
    for (const Tap& tap : t.taps) {
      const float* src = tap_source(at, tap, g);
      if (run_len > 0 && (src ? run_src && src == run_src + run_len : !run_src)) {
        run_len += tap.len;
        continue;
      }
      copy_run(dst, run_src, run_len);
      dst += run_len;
      run_src = src, run_len = tap.len;
    }
    copy_run(dst, run_src, run_len);
  }
};

}  // namespace

// mr is kGemmMR: the GEMM calling is this level's.
void PatchPackA::pack(int64_t i0, int64_t m, int64_t p0, int64_t k, int /*mr*/, float* a_pack) const {
  const Taps& taps = taps_of(g_, p0, k);
  PixelWalker pixel(x_, g_, group_, i0);
  // With every tap a whole number of 16-float runs (Cg = 16, 32, 64, ...), each tap's MR rows are
  // transposed into the sliver straight from x.
  const bool whole_vectors =
      std::all_of(taps.taps.begin(), taps.taps.end(), [](const Tap& t) { return t.len % 16 == 0; });
  if (whole_vectors) {
    for (int64_t s0 = 0; s0 < m; s0 += kGemmMR) {
      const int64_t count = std::min<int64_t>(kGemmMR, m - s0);
      PixelPosition rows[kGemmMR];
      for (int64_t r = 0; r < count; r++, pixel.next()) rows[r] = pixel.position;
      float* sliver = a_pack + s0 * k;
      for (const Tap& t : taps.taps) {
        const float* row_ptrs[kGemmMR];
        for (int64_t r = 0; r < kGemmMR; r++) row_ptrs[r] = r < count ? tap_source(rows[r], t, g_) : nullptr;
        pack_a_rows(row_ptrs, t.len, kGemmMR, sliver);
        sliver += t.len * kGemmMR;
      }
    }
    return;
  }
  // Otherwise gather the sliver's patch rows (MR, k) contiguously first, so that the transpose
  // runs on whole 16 x 16 blocks whatever Cg is.
  float* rows = scratch(kGemmMR * k);
  for (int64_t s0 = 0; s0 < m; s0 += kGemmMR) {
    const int64_t count = std::min<int64_t>(kGemmMR, m - s0);
    const float* row_ptrs[kGemmMR];
    for (int64_t r = 0; r < kGemmMR; r++) {
      row_ptrs[r] = r < count ? rows + r * k : nullptr;  // past the last row: zeros
      if (r < count) {
        pixel.gather(taps, rows + r * k);
        pixel.next();
      }
    }
    pack_a_rows(row_ptrs, k, kGemmMR, a_pack + s0 * k);
  }
}

void PatchTransposePackA::pack(int64_t i0, int64_t m, int64_t p0, int64_t k, int /*mr*/, float* a_pack) const {
  // Here the pack's rows are patch columns and its k is pixels: sliver t, step pp holds patch
  // columns i0 + t*MR .. of pixel p0 + pp, MR floats in a row. Gather the pixel's patch segment
  // (m floats) once, then deal it out in MR-wide pieces.
  const Taps& taps = taps_of(g_, i0, m);
  const int64_t full = m / kGemmMR * kGemmMR;
  float* row = scratch(m + kGemmMR);
  std::fill(row + m, row + full + kGemmMR, 0.0f);  // zero rows of the last, partial sliver
  PixelWalker pixel(x_, g_, group_, pixel0_ + p0);
  for (int64_t pp = 0; pp < k; pp++, pixel.next()) {
    pixel.gather(taps, row);
    for (int64_t t0 = 0; t0 < m; t0 += kGemmMR)
      std::memcpy(a_pack + t0 * k + pp * kGemmMR, row + t0, sizeof(float) * kGemmMR);
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
