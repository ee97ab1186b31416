#include "ops/f32_staging.h"

#include <omp.h>

#include <algorithm>
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

void staged_pointwise(std::initializer_list<PointwiseOperand> operands, int64_t n,
                      const std::function<void(float* const* chunks, int64_t n)>& kernel) {
  const std::vector<PointwiseOperand> ops(operands);
  const size_t count = ops.size();
  bool any_half = false;
  for (const PointwiseOperand& op : ops) any_half = any_half || is_half(op.tensor->dtype());
  std::vector<float*> whole(count);
  for (size_t k = 0; k < count; k++) whole[k] = static_cast<float*>(ops[k].tensor->data_raw());
  if (!any_half) {
    kernel(whole.data(), n);
    return;
  }
  // 16384 values: 64 KB of f32 per operand, a few operands within L2.
  constexpr int64_t kChunk = 16384;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel if (chunks > 1)
  {
    std::vector<float> buffers(count * kChunk);
    std::vector<float*> pointers(count);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
      const int64_t begin = c * kChunk, length = std::min(kChunk, n - begin);
      for (size_t k = 0; k < count; k++) {
        const Tensor& t = *ops[k].tensor;
        if (!is_half(t.dtype())) {
          pointers[k] = whole[k] + begin;
          continue;
        }
        pointers[k] = buffers.data() + k * kChunk;
        if (ops[k].role != PointwiseOperand::Out)
          cpu::convert_half_to_f32(t.dtype(), static_cast<const uint16_t*>(t.data_raw()) + begin, pointers[k], length);
      }
      kernel(pointers.data(), length);
      for (size_t k = 0; k < count; k++) {
        const Tensor& t = *ops[k].tensor;
        if (is_half(t.dtype()) && ops[k].role != PointwiseOperand::In)
          cpu::convert_f32_to_half(t.dtype(), pointers[k], static_cast<uint16_t*>(t.data_raw()) + begin, length);
      }
    }
  }
}

int64_t staged_row_groups(int64_t N, int64_t elements) {
  return std::max<int64_t>(1, std::min(N, (elements + kStagedRowsBlock - 1) / kStagedRowsBlock));
}

void staged_rows(std::initializer_list<PointwiseOperand> operands, int64_t N, int64_t groups,
                 const std::function<void(int64_t group, int64_t first_row, int64_t rows, float* const* blocks)>& kernel) {
  const std::vector<PointwiseOperand> ops(operands);
  const size_t count = ops.size();
  if (N == 0 || groups <= 0) return;
  std::vector<int64_t> width(count);  // elements per row
  int64_t widest = 1;
  for (size_t k = 0; k < count; k++) {
    width[k] = ops[k].tensor->numel() / N;
    widest = std::max(widest, width[k]);
  }
  // Rows per block: kStagedRowsBlock values of the widest operand, at least one row.
  const int64_t block_rows = std::max<int64_t>(1, kStagedRowsBlock / widest);
  std::vector<int64_t> offset(count + 1, 0);  // operand k's block in a thread's scratch
  for (size_t k = 0; k < count; k++)
    offset[k + 1] = offset[k] + (is_half(ops[k].tensor->dtype()) ? block_rows * width[k] : 0);
  // One scratch for all threads from the caching allocator: reused call after call, and counted in
  // its statistics. Uninitialised: every block is written before it is read.
  const int threads = groups > 1 ? omp_get_max_threads() : 1;
  Tensor scratch_all = Tensor::empty({std::max<int64_t>(1, threads * offset[count])}, DType::F32, Device::cpu());
#pragma omp parallel num_threads(threads)
  {
    float* scratch = scratch_all.data<float>() + omp_get_thread_num() * offset[count];
    std::vector<float*> blocks(count);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; g++) {
      const int64_t group_end = (g + 1) * N / groups;
      for (int64_t first = g * N / groups; first < group_end; first += block_rows) {
        const int64_t rows = std::min(block_rows, group_end - first);
        for (size_t k = 0; k < count; k++) {
          const Tensor& t = *ops[k].tensor;
          if (!is_half(t.dtype())) {
            blocks[k] = static_cast<float*>(t.data_raw()) + first * width[k];
            continue;
          }
          blocks[k] = scratch + offset[k];
          if (ops[k].role != PointwiseOperand::Out)
            cpu::convert_half_to_f32(t.dtype(), static_cast<const uint16_t*>(t.data_raw()) + first * width[k],
                                     blocks[k], rows * width[k]);
        }
        kernel(g, first, rows, blocks.data());
        for (size_t k = 0; k < count; k++) {
          const Tensor& t = *ops[k].tensor;
          if (is_half(t.dtype()) && ops[k].role != PointwiseOperand::In)
            cpu::convert_f32_to_half(t.dtype(), blocks[k], static_cast<uint16_t*>(t.data_raw()) + first * width[k],
                                     rows * width[k]);
        }
      }
    }
  }
}

}  // namespace tg::ops
