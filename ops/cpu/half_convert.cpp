// The whole-array conversions of ops/cpu/half_convert.h, compiled per instruction-set level.
#include "ops/cpu/half_convert.h"

#include <omp.h>

#include <algorithm>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// Below this many values a conversion is a few microseconds: threads would cost more than they save.
constexpr int64_t kParallelMin = int64_t{1} << 16;

// Calls fn(begin, end) on contiguous slices of [0, n), one per thread, slices aligned to 16 values
// so every vector stays whole.
template <typename Fn>
static void for_slices(int64_t n, Fn fn) {
  if (n < kParallelMin) {
    fn(0, n);
    return;
  }
#pragma omp parallel
  {
    int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t per = ((n + threads - 1) / threads + 15) / 16 * 16;  // covers n, whole vectors
    int64_t begin = std::min(n, t * per), end = std::min(n, begin + per);
    if (begin < end) fn(begin, end);
  }
}

void convert_half_to_f32(DType dtype, const uint16_t* src, float* dst, int64_t n) {
  for_slices(n, [&](int64_t begin, int64_t end) { half_to_f32_array(dtype, src + begin, dst + begin, end - begin); });
}

void convert_f32_to_half(DType dtype, const float* src, uint16_t* dst, int64_t n) {
  for_slices(n, [&](int64_t begin, int64_t end) { f32_to_half_array(dtype, src + begin, dst + begin, end - begin); });
}

void convert_half_to_f32_rows(DType dtype, const uint16_t* src, int64_t src_stride, float* dst, int64_t dst_stride,
                              int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) half_to_f32_array(dtype, src + r * src_stride, dst + r * dst_stride, cols);
}

void convert_f32_to_half_rows(DType dtype, const float* src, int64_t src_stride, uint16_t* dst, int64_t dst_stride,
                              int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++) f32_to_half_array(dtype, src + r * src_stride, dst + r * dst_stride, cols);
}

TG_CPU_ISA_END
}  // namespace tg::cpu
