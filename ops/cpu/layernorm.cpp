#include "ops/cpu/layernorm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// Below this many elements a parallel region costs more than it saves.
static constexpr int64_t kParallelMinElements = 1 << 15;
// The parameter gradients are reduced over this many fixed row chunks (fewer when N is smaller):
// enough to keep every thread of a large machine busy, few enough that the partial rows
// (kMaxChunks x 2C floats) stay a small fraction of the traffic.
static constexpr int64_t kMaxChunks = 64;

// One row: x (C) -> y (C), its mean and rstd. weight and bias are never null here.
static inline void layernorm_row(float* y, float* mean, float* rstd, const float* x, const float* weight,
                                 const float* bias, int64_t C, float eps) {
  const float inv_C = 1.0f / static_cast<float>(C);
  // The row is in L1 after the first pass, so two passes cost no more memory traffic than one.
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < C; i++) sum += x[i];
  const float m = sum * inv_C;
  // Two-pass variance (no E[x^2] - E[x]^2 cancellation). x - m is exact (Sterbenz) where x is near
  // m, so the sum of the deviations is C times the rounding error of m itself: subtracting its
  // share removes that error from the variance and from every output, which matters when the
  // row's offset is large against its spread (the f32 ulp of a mean of 1e4 is 1e-3).
  float squares = 0.0f, deviations = 0.0f;
#pragma omp simd reduction(+ : squares, deviations)
  for (int64_t i = 0; i < C; i++) {
    float d = x[i] - m;
    squares += d * d;
    deviations += d;
  }
  const float shift = deviations * inv_C;
  const float variance = std::max(0.0f, (squares - deviations * shift) * inv_C);
  const float s = 1.0f / std::sqrt(variance + eps);
#pragma omp simd
  for (int64_t i = 0; i < C; i++) y[i] = ((x[i] - m) - shift) * s * weight[i] + bias[i];
  *mean = m + shift;
  *rstd = s;
}

// inp (N,C) -> out (N,C); mean, rstd (N)
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int64_t N, int64_t C, float eps) {
  // A missing weight or bias is a row of ones or zeros, so the hot loop has one form.
  std::vector<float> ones, zeros;
  if (!weight) { ones.assign(C, 1.0f); weight = ones.data(); }
  if (!bias) { zeros.assign(C, 0.0f); bias = zeros.data(); }
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinElements)
  for (int64_t n = 0; n < N; n++) layernorm_row(out + n * C, mean + n, rstd + n, inp + n * C, weight, bias, C, eps);
}

// a, b (N,C) -> residual (N,C) = a + b; out (N,C) = layernorm(residual); mean, rstd (N)
void add_layernorm_forward(float* residual, float* out, float* mean, float* rstd, const float* a, const float* b,
                           const float* weight, const float* bias, int64_t N, int64_t C, float eps) {
  std::vector<float> ones, zeros;
  if (!weight) { ones.assign(C, 1.0f); weight = ones.data(); }
  if (!bias) { zeros.assign(C, 0.0f); bias = zeros.data(); }
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinElements)
  for (int64_t n = 0; n < N; n++) {
    // The sum row is normalised while it is still in L1: a and b are read once, and the result is
    // bit for bit the add followed by the LayerNorm.
    float* r = residual + n * C;
#pragma omp simd
    for (int64_t i = 0; i < C; i++) r[i] = a[n * C + i] + b[n * C + i];
    layernorm_row(out + n * C, mean + n, rstd + n, r, weight, bias, C, eps);
  }
}

// One row of the backward. dnorm = dout * weight; with norm = (x - mean) * rstd,
//   dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)).
// kParams: also add dout * norm and dout into the chunk's partial dweight / dbias rows.
template <bool kParams>
static void layernorm_backward_row(float* dx, float* partial_dweight, float* partial_dbias, const float* dy,
                                   const float* x, const float* weight, float m, float s, int64_t C) {
  float sum_dnorm = 0.0f, sum_dnorm_norm = 0.0f;
#pragma omp simd reduction(+ : sum_dnorm, sum_dnorm_norm)
  for (int64_t i = 0; i < C; i++) {
    float norm = (x[i] - m) * s;
    float dnorm = dy[i] * weight[i];
    sum_dnorm += dnorm;
    sum_dnorm_norm += dnorm * norm;
    if (kParams) {
      partial_dweight[i] += dy[i] * norm;
      partial_dbias[i] += dy[i];
    }
  }
  if (!dx) return;
  const float a = sum_dnorm / static_cast<float>(C), b = sum_dnorm_norm / static_cast<float>(C);
#pragma omp simd
  for (int64_t i = 0; i < C; i++) {
    float norm = (x[i] - m) * s;
    dx[i] += s * (dy[i] * weight[i] - a - norm * b);
  }
}

int64_t layernorm_backward_chunks(int64_t N) { return std::max<int64_t>(1, std::min(N, kMaxChunks)); }

void layernorm_backward_rows(float* dinp, float* partial_dweight, float* partial_dbias, const float* dout,
                             const float* inp, const float* weight, const float* mean, const float* rstd, int64_t rows,
                             int64_t C) {
  for (int64_t n = 0; n < rows; n++) {
    float* dx = dinp ? dinp + n * C : nullptr;
    if (partial_dweight)
      layernorm_backward_row<true>(dx, partial_dweight, partial_dbias, dout + n * C, inp + n * C, weight, mean[n],
                                   rstd[n], C);
    else
      layernorm_backward_row<false>(dx, nullptr, nullptr, dout + n * C, inp + n * C, weight, mean[n], rstd[n], C);
  }
}

// dinp (N,C) +=, dweight (C) +=, dbias (C) += from dout (N,C), inp (N,C), weight (C); mean, rstd (N)
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, int64_t N, int64_t C) {
  std::vector<float> ones;
  if (!weight) { ones.assign(C, 1.0f); weight = ones.data(); }
  const bool params = dweight || dbias;
  if (!params && !dinp) return;
  if (N == 0) return;

  if (!params) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinElements)
    for (int64_t n = 0; n < N; n++)
      layernorm_backward_rows(dinp + n * C, nullptr, nullptr, dout + n * C, inp + n * C, weight, mean + n, rstd + n, 1, C);
    return;
  }
  // Chunk k covers rows [k*N/chunks, (k+1)*N/chunks) and owns partial rows dweight, dbias (2C).
  const int64_t chunks = layernorm_backward_chunks(N);
  std::vector<float> partial(static_cast<size_t>(chunks * 2 * C), 0.0f);
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinElements)
  for (int64_t k = 0; k < chunks; k++) {
    const int64_t begin = k * N / chunks, end = (k + 1) * N / chunks;
    float* partial_dweight = partial.data() + k * 2 * C;
    layernorm_backward_rows(dinp ? dinp + begin * C : nullptr, partial_dweight, partial_dweight + C, dout + begin * C,
                            inp + begin * C, weight, mean + begin, rstd + begin, end - begin, C);
  }
  layernorm_backward_add_partials(dweight, dbias, partial.data(), chunks, C);
}

void layernorm_backward_add_partials(float* dweight, float* dbias, const float* partial, int64_t chunks, int64_t C) {
  // Chunk order, column by column: a fixed order of additions for every element.
  for (int64_t k = 0; k < chunks; k++) {
    const float* partial_dweight = partial + k * 2 * C;
    const float* partial_dbias = partial_dweight + C;
    if (dweight) {
#pragma omp simd
      for (int64_t i = 0; i < C; i++) dweight[i] += partial_dweight[i];
    }
    if (dbias) {
#pragma omp simd
      for (int64_t i = 0; i < C; i++) dbias[i] += partial_dbias[i];
    }
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
