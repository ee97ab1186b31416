// Argument checks shared by every op front. Each throws tg::Error naming the op, the argument,
// what was expected and what was found, e.g.
//   "layernorm_forward: weight has shape (5), expected (4) (the last dimension of inp)".
#pragma once
#include <initializer_list>
#include <string>

#include "tensor/tensor.h"

namespace tg::ops {

void check_defined(const char* op, const Tensor& t, const char* name);
void check_shape(const char* op, const Tensor& t, const char* name, const Shape& expected, const char* why = nullptr);
void check_same_shape(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name);
void check_dim(const char* op, const Tensor& t, const char* name, int64_t ndim);
void check_dtype(const char* op, const Tensor& t, const char* name, DType expected);
void check_contiguous(const char* op, const Tensor& t, const char* name);
void check_f32_contiguous(const char* op, const Tensor& t, const char* name);  // what every CPU kernel reads
// The dtypes of the floating-point kernels on every device: f32, bf16 or f16. Half-precision
// storage, f32 arithmetic: the CUDA kernels widen on load and round on store; the CPU fronts stage
// halves through f32 buffers (ops/f32_staging.h).
void check_float_or_half_dtype(const char* op, const Tensor& t, const char* name);
void check_float_or_half_contiguous(const char* op, const Tensor& t, const char* name);
// b has a's dtype (kernels take one element type for all their floating-point operands).
void check_same_dtype(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name);
// The contract of a same-shape elementwise kernel: every tensor defined, contiguous, of the first
// one's shape, dtype (check_float_or_half_dtype) and device. Returns the device. Each entry is {tensor, its name}.
struct NamedTensor {
  const Tensor* tensor;
  const char* name;
};
Device check_elementwise(const char* op, std::initializer_list<NamedTensor> tensors);
// All tensors on one device; returns it.
Device check_same_device(const char* op, std::initializer_list<const Tensor*> tensors);
// "[1, 3]": the position of flat (row-major) element `index` in a tensor of `shape`, for messages
// that point at one bad element, such as an out-of-range id.
std::string position_str(int64_t index, const Shape& shape);
// Throws "<op> has no CUDA kernel yet": for a front's `case DeviceType::CUDA:` when the op has a
// CPU kernel and no CUDA one. True whatever the build, so it needs no #ifdef.
[[noreturn]] void throw_no_cuda_kernel(const char* op);
// The front's `default:`, reached when no `case` serves the device. In a build with CUDA that means
// the op has no kernel for it (the message above); only a build without CUDA says
// "built without CUDA". A front without a CUDA kernel may therefore leave its CUDA case out.
[[noreturn]] void throw_unsupported_device(const char* op, Device device);

}  // namespace tg::ops
