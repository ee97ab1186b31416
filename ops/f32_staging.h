// The CPU kernels compute in f32 and read and write f32 arrays. A front whose tensors are bf16 or
// f16 stages them: the kernel gets widened f32 copies of what it reads and f32 buffers for what it
// writes, and finish() rounds those buffers into the half tensors, once each. That is the CUDA
// kernels' contract (load, compute in f32, round once on store) with one mechanism for every op
// family instead of a half copy of every kernel; an f32 tensor passes straight through.
//
//   F32Staging staged;
//   cpu::gelu_forward(staged.out(out), staged.in(inp), n);
//   staged.finish();
//
// A staged tensor may be a strided view (non-negative strides): the copy covers the span of storage
// from its first to its last element, so the kernel indexes it with the tensor's own strides.
// Reductions over a staged tensor (LayerNorm's statistics, the loss) are therefore f32 throughout.
// The copies are transient (freed by the caching allocator when the staging object dies); the
// conversions run at the active instruction-set level, threaded when large (ops/cpu/half_convert.h).
#pragma once
#include <functional>
#include <initializer_list>
#include <vector>

#include "tensor/tensor.h"

namespace tg::ops {

class F32Staging {
 public:
  F32Staging() = default;
  F32Staging(const F32Staging&) = delete;
  F32Staging& operator=(const F32Staging&) = delete;

  // What the kernel reads: t's data, or its widened copy. Null for an undefined tensor.
  const float* in(const Tensor& t);
  // What the kernel writes without reading: t's data, or an f32 buffer rounded into t by finish().
  // (A strided half view is widened first, so the elements between its own keep their values.)
  float* out(Tensor& t);
  // What the kernel reads and updates (the += of gradients): the widened copy, rounded back by
  // finish(); the value stored is the f32 sum rounded once.
  float* inout(Tensor& t);
  // Rounds every out/inout buffer into its tensor. Call it after the kernel; a front that throws
  // before then leaves the half tensors untouched.
  void finish();

 private:
  struct Staged {
    Tensor half;    // the bf16/f16 tensor
    Tensor buffer;  // its f32 span
  };
  Tensor widened(const Tensor& t, bool copy);
  std::vector<Staged> pending_;
};

// For kernels whose element i reads and writes element i of each operand only (activations, scale):
// the operands, all contiguous and of n elements, are staged a chunk at a time inside one OpenMP
// loop, so a chunk's f32 copies stay in each thread's cache and the half tensors are read and
// written once (whole-tensor staging moves 2.5x the bytes of the f32 op; this moves half). The
// kernel gets each operand's chunk in the order given (f32 operands: their own data) and the
// chunk's length; it runs inside the loop, so its own OpenMP loop runs on the calling thread.
// With no half operand it is one call over the whole arrays.
struct PointwiseOperand {
  const Tensor* tensor;
  enum Role { In, Out, InOut } role;
};
void staged_pointwise(std::initializer_list<PointwiseOperand> operands, int64_t n,
                      const std::function<void(float* const* chunks, int64_t n)>& kernel);

// For kernels over independent rows (LayerNorm, attention's batch elements): every operand is
// contiguous with N rows (an operand's row is its numel / N elements), and the rows are split into
// `groups` fixed groups, group g covering rows [g*N/groups, (g+1)*N/groups), one OpenMP loop over
// the groups. Each thread stages its group a block of rows at a time into its own f32 scratch (at
// most kStagedRowsBlock values per operand, at least one row) and calls kernel(group, first_row,
// rows, blocks) on each block in row order; blocks[k] is operand k's block (an f32 operand's own
// data), out/inout blocks are rounded into their tensors after the call. So the f32 copies are a
// few rows per thread instead of whole tensors; a kernel that reduces over rows keeps its bits by
// reducing per group (groups fixed by N, not by the thread count). The kernel runs inside the
// loop: its own OpenMP loops run on the calling thread.
constexpr int64_t kStagedRowsBlock = 16384;
// The groups for N independent rows of `elements` values in all (nothing reduced across rows): one
// per kStagedRowsBlock values, so that every thread takes a share, at least one and at most N.
int64_t staged_row_groups(int64_t N, int64_t elements);
void staged_rows(std::initializer_list<PointwiseOperand> operands, int64_t N, int64_t groups,
                 const std::function<void(int64_t group, int64_t first_row, int64_t rows, float* const* blocks)>& kernel);

}  // namespace tg::ops
