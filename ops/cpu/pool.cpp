#include "ops/cpu/pool.h"

#include <cmath>
#include <limits>
#include <vector>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// Below this many elements a parallel region costs more than it saves.
static constexpr int64_t kParallelMinElements = 1 << 15;

// x (N,H,W,C) -> out (N,P,Q,C), argmax (N,P,Q,C)
void maxpool2d_forward(float* out, int32_t* argmax, const float* x, int64_t N, int64_t C, const MaxPoolGeometry& g) {
  const int64_t H = g.H, W = g.W, P = g.P, Q = g.Q;
  // Output rows (n,p) are independent; within one, each output position's C channels are kept in
  // its own out/argmax row and updated tap by tap in window order, so a later tap must be strictly
  // greater to win: the first maximum keeps its index.
#pragma omp parallel for collapse(2) schedule(static) if (N * H * W * C >= kParallelMinElements)
  for (int64_t n = 0; n < N; n++) {
    for (int64_t p = 0; p < P; p++) {
      const float* image = x + n * H * W * C;
      for (int64_t q = 0; q < Q; q++) {
        float* best = out + ((n * P + p) * Q + q) * C;
        int32_t* where = argmax + ((n * P + p) * Q + q) * C;
        // As PyTorch: start from -inf at the window's first tap inside the input, so that a window of
        // -inf points at a real tap (and one with no tap inside, only possible with dilation, at -1).
        int32_t first_tap = -1;
        for (int64_t i = 0; i < g.kernel_h && first_tap < 0; i++)
          for (int64_t j = 0; j < g.kernel_w && first_tap < 0; j++) {
            const int64_t h = p * g.stride_h - g.pad_h + i * g.dilation_h, w = q * g.stride_w - g.pad_w + j * g.dilation_w;
            if (h >= 0 && h < H && w >= 0 && w < W) first_tap = static_cast<int32_t>(h * W + w);
          }
        for (int64_t c = 0; c < C; c++) {
          best[c] = -std::numeric_limits<float>::infinity();
          where[c] = first_tap;
        }
        for (int64_t i = 0; i < g.kernel_h; i++) {
          const int64_t h = p * g.stride_h - g.pad_h + i * g.dilation_h;
          if (h < 0 || h >= H) continue;
          for (int64_t j = 0; j < g.kernel_w; j++) {
            const int64_t w = q * g.stride_w - g.pad_w + j * g.dilation_w;
            if (w < 0 || w >= W) continue;
            const float* tap = image + (h * W + w) * C;
            const int32_t index = static_cast<int32_t>(h * W + w);
#pragma omp simd
            for (int64_t c = 0; c < C; c++) {
              // PyTorch's rule: strictly greater, or NaN (nothing is greater than a NaN, so it stays).
              const bool wins = tap[c] > best[c] || tap[c] != tap[c];
              best[c] = wins ? tap[c] : best[c];
              where[c] = wins ? index : where[c];
            }
          }
        }
      }
    }
  }
}

// dx (N,H,W,C) += dout (N,P,Q,C) at argmax
void maxpool2d_backward(float* dx, const float* dout, const int32_t* argmax, int64_t N, int64_t C,
                        const MaxPoolGeometry& g) {
  const int64_t HW = g.H * g.W, PQ = g.P * g.Q;
  // Overlapping windows of one image can route to the same input, so the images are the unit of
  // parallel work, and each image's outputs are scattered in order: the same bits on every run.
#pragma omp parallel for schedule(static) if (N * HW * C >= kParallelMinElements)
  for (int64_t n = 0; n < N; n++) {
    float* image = dx + n * HW * C;
    for (int64_t o = 0; o < PQ; o++) {
      const float* dy = dout + (n * PQ + o) * C;
      const int32_t* where = argmax + (n * PQ + o) * C;
      for (int64_t c = 0; c < C; c++)
        if (where[c] >= 0) image[where[c] * C + c] += dy[c];  // -1: a window of dilated taps all outside
    }
  }
}

// x (N,H,W,C) -> out (N,P,Q,C); h_bins (P), w_bins (Q)
void avgpool2d_forward(float* out, const float* x, int64_t N, int64_t H, int64_t W, int64_t C, const PoolBin* h_bins,
                       int64_t P, const PoolBin* w_bins, int64_t Q) {
#pragma omp parallel for collapse(2) schedule(static) if (N * H * W * C >= kParallelMinElements)
  for (int64_t n = 0; n < N; n++) {
    for (int64_t p = 0; p < P; p++) {
      const float* image = x + n * H * W * C;
      const PoolBin hb = h_bins[p];
      for (int64_t q = 0; q < Q; q++) {
        const PoolBin wb = w_bins[q];
        float* y = out + ((n * P + p) * Q + q) * C;
        // Sum the window's rows of C into the output row (in L1), then scale it once.
        for (int64_t c = 0; c < C; c++) y[c] = 0.0f;
        for (int64_t h = hb.begin; h < hb.end; h++)
          for (int64_t w = wb.begin; w < wb.end; w++) {
            const float* tap = image + (h * W + w) * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) y[c] += tap[c];
          }
        const float inv_divisor = 1.0f / static_cast<float>(hb.count * wb.count);
#pragma omp simd
        for (int64_t c = 0; c < C; c++) y[c] *= inv_divisor;
      }
    }
  }
}

// dx (N,H,W,C) += dout (N,P,Q,C) / divisor over each window
void avgpool2d_backward(float* dx, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C, const PoolBin* h_bins,
                        int64_t P, const PoolBin* w_bins, int64_t Q) {
  // Windows of one image may overlap (and adaptive bins do), so parallel over images, in order
  // within each.
#pragma omp parallel for schedule(static) if (N * H * W * C >= kParallelMinElements)
  for (int64_t n = 0; n < N; n++) {
    float* image = dx + n * H * W * C;
    std::vector<float> share(C);
    for (int64_t p = 0; p < P; p++) {
      const PoolBin hb = h_bins[p];
      for (int64_t q = 0; q < Q; q++) {
        const PoolBin wb = w_bins[q];
        const float* dy = dout + ((n * P + p) * Q + q) * C;
        const float inv_divisor = 1.0f / static_cast<float>(hb.count * wb.count);
#pragma omp simd
        for (int64_t c = 0; c < C; c++) share[c] = dy[c] * inv_divisor;
        for (int64_t h = hb.begin; h < hb.end; h++)
          for (int64_t w = wb.begin; w < wb.end; w++) {
            float* tap = image + (h * W + w) * C;
#pragma omp simd
            for (int64_t c = 0; c < C; c++) tap[c] += share[c];
          }
      }
    }
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
