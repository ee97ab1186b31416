#include "ops/cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/cpu/fast_math.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// See ops/cpu/elementwise.cpp: below this many elements one thread is faster.
static constexpr int64_t kParallelMin = 1 << 15;
// Row sums add in float over blocks of this many elements and in double across blocks, so a row of
// a 50k-token vocabulary sums as accurately as a short one.
static constexpr int64_t kBlock = 1024;

static float row_max(const float* x, int64_t C) {
  float m = -std::numeric_limits<float>::infinity();
  // A plain comparison: gcc does not vectorize std::max / fmaxf in a reduction. NaNs are skipped
  // here and still reach the output through exp(NaN - m).
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < C; c++) m = x[c] > m ? x[c] : m;
  return m;
}

// exp(d) for d = x - max <= 0 (or NaN): only the underflow end of fast_exp's range checks is needed.
static inline float exp_nonpositive(float d) {
  return d < -87.3f ? 0.0f : fast_exp_in_range(d < -87.3f ? -87.3f : d);
}

// out = exp(x - shift) for the row; returns the sum of out.
static double exp_row(float* out, const float* x, float shift, int64_t C) {
  double total = 0.0;
  for (int64_t start = 0; start < C; start += kBlock) {
    int64_t end = std::min(C, start + kBlock);
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = start; c < end; c++) {
      float e = exp_nonpositive(x[c] - shift);
      out[c] = e;
      s += e;
    }
    total += s;
  }
  return total;
}

// sum over the row of a[c] * b[c] (b may be null for a plain sum), float blocks added in double.
static double row_dot(const float* a, const float* b, int64_t C) {
  double total = 0.0;
  for (int64_t start = 0; start < C; start += kBlock) {
    int64_t end = std::min(C, start + kBlock);
    float s = 0.0f;
    if (b) {
#pragma omp simd reduction(+ : s)
      for (int64_t c = start; c < end; c++) s += a[c] * b[c];
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t c = start; c < end; c++) s += a[c];
    }
    total += s;
  }
  return total;
}

// The three passes over a row (max, exp + sum, normalise) re-read it from L1/L2, so memory sees
// one read of inp and one write of out.
void softmax_forward(float* out, const float* inp, int64_t rows, int64_t C) {
#pragma omp parallel for schedule(static) if (rows * C >= kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* x = inp + r * C;
    float* y = out + r * C;
    float m = row_max(x, C);
    // A row of -inf has no maximum to subtract: shift by 0 so it gives NaN (0/0) as the maths says,
    // rather than exp(-inf + inf).
    if (std::isinf(m) && m < 0) m = 0.0f;
    float inv = static_cast<float>(1.0 / exp_row(y, x, m, C));
#pragma omp simd
    for (int64_t c = 0; c < C; c++) y[c] *= inv;
  }
}

void softmax_backward(float* dinp, const float* out, const float* dout, int64_t rows, int64_t C) {
#pragma omp parallel for schedule(static) if (rows * C >= kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* y = out + r * C;
    const float* dy = dout + r * C;
    float* dx = dinp + r * C;
    float dot = static_cast<float>(row_dot(dy, y, C));
#pragma omp simd
    for (int64_t c = 0; c < C; c++) dx[c] += y[c] * (dy[c] - dot);
  }
}

void log_softmax_forward(float* out, const float* inp, int64_t rows, int64_t C) {
#pragma omp parallel for schedule(static) if (rows * C >= kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* x = inp + r * C;
    float* y = out + r * C;
    float m = row_max(x, C);
    if (std::isinf(m) && m < 0) m = 0.0f;
    // The exponentials land in y only as scratch; the second pass overwrites them. (x - m) - log_sum,
    // not x - (m + log_sum): with logits of 1e4 the sum m + log_sum would round to float's spacing
    // there (1e-3), while x - m is exact for the large entries that matter.
    float log_sum = static_cast<float>(std::log(exp_row(y, x, m, C)));
#pragma omp simd
    for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) - log_sum;
  }
}

void log_softmax_backward(float* dinp, const float* out, const float* dout, int64_t rows, int64_t C) {
#pragma omp parallel for schedule(static) if (rows * C >= kParallelMin)
  for (int64_t r = 0; r < rows; r++) {
    const float* y = out + r * C;
    const float* dy = dout + r * C;
    float* dx = dinp + r * C;
    float total = static_cast<float>(row_dot(dy, nullptr, C));
#pragma omp simd
    for (int64_t c = 0; c < C; c++) dx[c] += dy[c] - exp_nonpositive(y[c]) * total;
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
