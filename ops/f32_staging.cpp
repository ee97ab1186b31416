#include "ops/f32_staging.h"

#include <string>

#include "ops/cpu/half_convert.h"

namespace tg::ops {

static bool is_half(DType dtype) { return dtype == DType::BF16 || dtype == DType::F16; }

// Elements from t's first to its last, inclusive: what a kernel indexing t by its strides touches.
static int64_t span_of(const Tensor& t) {
  if (t.numel() == 0) return 0;
  int64_t span = 1;
  for (int64_t d = 0; d < t.dim(); d++) {
    if (t.strides()[d] < 0)
      throw Error("f32 staging: a tensor of shape " + shape_str(t.shape()) + " has a negative stride in dimension " +
                  std::to_string(d) + "; the CPU kernels read non-negative strides");
    span += (t.shape()[d] - 1) * t.strides()[d];
  }
  return span;
}

Tensor F32Staging::widened(const Tensor& t, bool copy) {
  const int64_t span = span_of(t);
  Tensor buffer = Tensor::empty({span}, DType::F32, Device::cpu());
  if (copy) cpu::convert_half_to_f32(t.dtype(), static_cast<const uint16_t*>(t.data_raw()), buffer.data<float>(), span);
  return buffer;
}

const float* F32Staging::in(const Tensor& t) {
  if (!t.defined()) return nullptr;
  if (!is_half(t.dtype())) return t.data<float>();
  Tensor buffer = widened(t, true);
  const float* data = buffer.data<float>();
  pending_.push_back({Tensor(), buffer});  // kept alive until the staging object dies, never stored
  return data;
}

float* F32Staging::out(Tensor& t) {
  if (!t.defined()) return nullptr;
  if (!is_half(t.dtype())) return t.data<float>();
  pending_.push_back({t, widened(t, !t.is_contiguous())});
  return pending_.back().buffer.data<float>();
}

float* F32Staging::inout(Tensor& t) {
  if (!t.defined()) return nullptr;
  if (!is_half(t.dtype())) return t.data<float>();
  pending_.push_back({t, widened(t, true)});
  return pending_.back().buffer.data<float>();
}

void F32Staging::finish() {
  for (Staged& s : pending_) {
    if (!s.half.defined()) continue;
    cpu::convert_f32_to_half(s.half.dtype(), s.buffer.data<float>(), static_cast<uint16_t*>(s.half.data_raw()),
                             s.buffer.numel());
    s.half = Tensor();  // stored once
  }
}

}  // namespace tg::ops
