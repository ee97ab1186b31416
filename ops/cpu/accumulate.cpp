#include "ops/cpu/accumulate.h"

#include <cstddef>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

void accumulate_strided(float* dst, const std::vector<int64_t>& dst_strides, const float* src,
                        const std::vector<int64_t>& src_strides, const std::vector<int64_t>& shape) {
  size_t nd = shape.size();
  if (nd == 0) {
    *dst += *src;
    return;
  }
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  if (n == 0) return;
  // Rows of the innermost dimension are independent 1-D adds, so they split across threads.
  int64_t inner = shape[nd - 1];
  int64_t d_inner = dst_strides[nd - 1], s_inner = src_strides[nd - 1];
  int64_t rows = n / inner;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t r = 0; r < rows; r++) {
    int64_t d_off = 0, s_off = 0, rest = r;
    for (size_t k = nd - 1; k-- > 0;) {
      int64_t i = rest % shape[k];
      rest /= shape[k];
      d_off += i * dst_strides[k];
      s_off += i * src_strides[k];
    }
    float* d = dst + d_off;
    const float* s = src + s_off;
    if (d_inner == 1 && s_inner == 1) {
#pragma omp simd
      for (int64_t i = 0; i < inner; i++) d[i] += s[i];
    } else {
      for (int64_t i = 0; i < inner; i++) d[i * d_inner] += s[i * s_inner];
    }
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
