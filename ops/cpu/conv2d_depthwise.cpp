#include "ops/cpu/conv2d_depthwise.h"

#include <omp.h>

#include <cstddef>
#include <vector>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

namespace {

// weight (K,1,R,S) -> (R,S,K): one kernel tap's K weights contiguous, like a pixel's channels.
std::vector<float> taps_major(const float* weight, const Conv2dGeometry& g) {
  const int64_t RS = g.R * g.S;
  std::vector<float> wt(static_cast<size_t>(RS * g.K));
  for (int64_t k = 0; k < g.K; k++)
    for (int64_t rs = 0; rs < RS; rs++) wt[rs * g.K + k] = weight[k * RS + rs];
  return wt;
}

// acc (K) += x_pixel (C) * w_tap (K), filter k reading channel k / M.
inline void tap_forward(float* __restrict acc, const float* __restrict x_pixel, const float* __restrict w_tap,
                        int64_t C, int64_t M) {
  if (M == 1) {
#pragma omp simd
    for (int64_t c = 0; c < C; c++) acc[c] += x_pixel[c] * w_tap[c];
    return;
  }
  for (int64_t c = 0; c < C; c++)
    for (int64_t j = 0; j < M; j++) acc[c * M + j] += x_pixel[c] * w_tap[c * M + j];
}

}  // namespace

void conv2d_depthwise_forward(float* out, const float* x, const float* weight, const float* bias,
                              const Conv2dGeometry& g) {
  const std::vector<float> wt = taps_major(weight, g);
  const int64_t K = g.K, C = g.C, M = K / C;
#pragma omp parallel for schedule(static) if (g.output_pixels() * K * g.R * g.S > (1 << 16))
  for (int64_t np = 0; np < g.N * g.P; np++) {
    const int64_t n = np / g.P, p = np % g.P;
    for (int64_t q = 0; q < g.Q; q++) {
      float* acc = out + (np * g.Q + q) * K;
      for (int64_t k = 0; k < K; k++) acc[k] = bias ? bias[k] : 0.0f;
      for (int64_t r = 0; r < g.R; r++) {
        const int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
        if (h < 0 || h >= g.H) continue;
        for (int64_t s = 0; s < g.S; s++) {
          const int64_t w = q * g.stride_w - g.pad_w + s * g.dilation_w;
          if (w < 0 || w >= g.W) continue;
          tap_forward(acc, x + ((n * g.H + h) * g.W + w) * C, wt.data() + (r * g.S + s) * K, C, M);
        }
      }
    }
  }
}

void conv2d_depthwise_backward_input(float* dx, const float* dout, const float* weight, const Conv2dGeometry& g) {
  const std::vector<float> wt = taps_major(weight, g);
  const int64_t K = g.K, C = g.C, M = K / C;
#pragma omp parallel for schedule(static) if (g.output_pixels() * K * g.R * g.S > (1 << 16))
  for (int64_t nh = 0; nh < g.N * g.H; nh++) {
    const int64_t n = nh / g.H, h = nh % g.H;
    for (int64_t w = 0; w < g.W; w++) {
      float* __restrict d = dx + (nh * g.W + w) * C;
      // Output (p, q) reads this pixel through tap (r, s) when p*stride - pad + r*dilation == h.
      for (int64_t r = 0; r < g.R; r++) {
        const int64_t ph = h + g.pad_h - r * g.dilation_h;
        if (ph < 0 || ph % g.stride_h) continue;
        const int64_t p = ph / g.stride_h;
        if (p >= g.P) continue;
        for (int64_t s = 0; s < g.S; s++) {
          const int64_t qw = w + g.pad_w - s * g.dilation_w;
          if (qw < 0 || qw % g.stride_w) continue;
          const int64_t q = qw / g.stride_w;
          if (q >= g.Q) continue;
          const float* __restrict go = dout + ((n * g.P + p) * g.Q + q) * K;
          const float* __restrict w_tap = wt.data() + (r * g.S + s) * K;
          if (M == 1) {
#pragma omp simd
            for (int64_t c = 0; c < C; c++) d[c] += go[c] * w_tap[c];
          } else {
            for (int64_t c = 0; c < C; c++) {
              float sum = 0.0f;
              for (int64_t j = 0; j < M; j++) sum += go[c * M + j] * w_tap[c * M + j];
              d[c] += sum;
            }
          }
        }
      }
    }
  }
}

void conv2d_depthwise_backward_weight(float* dweight, const float* dout, const float* x, const Conv2dGeometry& g) {
  const int64_t K = g.K, C = g.C, M = K / C, RS = g.R * g.S, rows = g.N * g.P;
  const int threads =
      g.output_pixels() * K * RS > (1 << 16) && !omp_in_parallel() ? omp_get_max_threads() : 1;
  // partials (threads, R, S, K): each thread's sum over its band of output rows.
  std::vector<float> partials(static_cast<size_t>(threads * RS * K), 0.0f);
#pragma omp parallel num_threads(threads)
  {
    const int team = omp_get_num_threads(), id = omp_get_thread_num();
    float* part = partials.data() + id * RS * K;
    for (int64_t np = rows * id / team; np < rows * (id + 1) / team; np++) {
      const int64_t n = np / g.P, p = np % g.P;
      for (int64_t q = 0; q < g.Q; q++) {
        const float* __restrict go = dout + (np * g.Q + q) * K;
        for (int64_t r = 0; r < g.R; r++) {
          const int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
          if (h < 0 || h >= g.H) continue;
          for (int64_t s = 0; s < g.S; s++) {
            const int64_t w = q * g.stride_w - g.pad_w + s * g.dilation_w;
            if (w < 0 || w >= g.W) continue;
            const float* __restrict xp = x + ((n * g.H + h) * g.W + w) * C;
            float* __restrict acc = part + (r * g.S + s) * K;
            if (M == 1) {
#pragma omp simd
              for (int64_t c = 0; c < C; c++) acc[c] += go[c] * xp[c];
            } else {
              for (int64_t c = 0; c < C; c++)
                for (int64_t j = 0; j < M; j++) acc[c * M + j] += go[c * M + j] * xp[c];
            }
          }
        }
      }
    }
  }
  for (int t = 0; t < threads; t++)
    for (int64_t k = 0; k < K; k++)
      for (int64_t rs = 0; rs < RS; rs++) dweight[k * RS + rs] += partials[(t * RS + rs) * K + k];
}

TG_CPU_ISA_END
}  // namespace tg::cpu
