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

}  // namespace tg::ops
