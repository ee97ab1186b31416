#include "ops/cpu/dropout.h"

#include <cmath>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// See ops/cpu/elementwise.cpp: below this many elements one thread is faster.
static constexpr int64_t kParallelMin = 1 << 15;

// SplitMix64's output for counter i: its state after i + 1 steps is key + (i + 1) * golden, and the
// finaliser below is its output function (the sequence passes BigCrush).
static inline uint64_t mask_bits(uint64_t key, uint64_t i) {
  uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Elements whose 24-bit draw is below this are dropped: P(drop) = threshold / 2^24, within 2^-25
// of p.
static inline uint64_t drop_threshold(float p) {
  return static_cast<uint64_t>(std::llround(static_cast<double>(p) * 16777216.0));
}

// The kernels multiply by a factor (scale or 0) instead of selecting `keep ? inp * scale : 0`: the
// select compiles to a masked load that merges into the previous iteration's register, which chains
// every load to the one before and makes the loop wait on memory latency (4x slower past the
// cache). A NaN input therefore stays NaN where dropped, as in PyTorch (x * mask * scale).
void dropout_forward(float* out, const float* inp, int64_t n, float p, uint64_t key) {
  uint64_t threshold = drop_threshold(p);
  float scale = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    bool keep = (mask_bits(key, static_cast<uint64_t>(i)) >> 40) >= threshold;
    out[i] = inp[i] * (keep ? scale : 0.0f);
  }
}

void dropout_backward(float* dinp, const float* dout, int64_t n, float p, uint64_t key) {
  uint64_t threshold = drop_threshold(p);
  float scale = 1.0f / (1.0f - p);
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) {
    bool keep = (mask_bits(key, static_cast<uint64_t>(i)) >> 40) >= threshold;
    dinp[i] += dout[i] * (keep ? scale : 0.0f);
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
