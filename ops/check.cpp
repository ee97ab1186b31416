#include "ops/check.h"

namespace tg::ops {

void check_defined(const char* op, const Tensor& t, const char* name) {
  if (!t.defined()) throw Error(std::string(op) + ": " + name + " is an undefined tensor");
}

void check_shape(const char* op, const Tensor& t, const char* name, const Shape& expected, const char* why) {
  check_defined(op, t, name);
  if (t.shape() != expected)
    throw Error(std::string(op) + ": " + name + " has shape " + shape_str(t.shape()) + ", expected " + shape_str(expected) +
                (why ? std::string(" (") + why + ")" : std::string()));
}

void check_same_shape(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  check_defined(op, a, a_name);
  check_defined(op, b, b_name);
  if (a.shape() != b.shape())
    throw Error(std::string(op) + ": " + a_name + " has shape " + shape_str(a.shape()) + " but " + b_name + " has " +
                shape_str(b.shape()) + "; they must match");
}

void check_dim(const char* op, const Tensor& t, const char* name, int64_t ndim) {
  check_defined(op, t, name);
  if (t.dim() != ndim)
    throw Error(std::string(op) + ": " + name + " must have " + std::to_string(ndim) + " dimensions, found shape " +
                shape_str(t.shape()));
}

void check_dtype(const char* op, const Tensor& t, const char* name, DType expected) {
  check_defined(op, t, name);
  if (t.dtype() != expected)
    throw Error(std::string(op) + ": " + name + " has dtype " + dtype_name(t.dtype()) + ", expected " + dtype_name(expected));
}

void check_contiguous(const char* op, const Tensor& t, const char* name) {
  check_defined(op, t, name);
  if (!t.is_contiguous())
    throw Error(std::string(op) + ": " + name + " of shape " + shape_str(t.shape()) + " must be contiguous");
}

void check_f32_contiguous(const char* op, const Tensor& t, const char* name) {
  check_dtype(op, t, name, DType::F32);
  check_contiguous(op, t, name);
}

void check_float_or_half_dtype(const char* op, const Tensor& t, const char* name) {
  check_defined(op, t, name);
  DType dtype = t.dtype();
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    throw Error(std::string(op) + ": " + name + " has dtype " + dtype_name(dtype) + ", expected f32, bf16 or f16");
}

void check_float_or_half_contiguous(const char* op, const Tensor& t, const char* name) {
  check_float_or_half_dtype(op, t, name);
  check_contiguous(op, t, name);
}

void check_same_dtype(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  check_defined(op, a, a_name);
  check_defined(op, b, b_name);
  if (a.dtype() != b.dtype())
    throw Error(std::string(op) + ": " + b_name + " has dtype " + dtype_name(b.dtype()) + " but " + a_name + " has " +
                dtype_name(a.dtype()) + "; they must match");
}

Device check_same_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (!t || !t->defined()) continue;
    if (!first) first = t;
    else if (t->device() != first->device())
      throw Error(std::string(op) + ": tensors on different devices (" + first->device().str() + " and " +
                  t->device().str() + ")");
  }
  return first ? first->device() : Device::cpu();
}

Device check_elementwise(const char* op, std::initializer_list<NamedTensor> tensors) {
  const NamedTensor* first = nullptr;
  for (const NamedTensor& t : tensors) {
    check_float_or_half_contiguous(op, *t.tensor, t.name);
    if (!first) first = &t;
    else {
      check_same_shape(op, *t.tensor, t.name, *first->tensor, first->name);
      check_same_dtype(op, *first->tensor, first->name, *t.tensor, t.name);
    }
    if (t.tensor->device() != first->tensor->device())
      throw Error(std::string(op) + ": " + t.name + " is on " + t.tensor->device().str() + " but " + first->name +
                  " is on " + first->tensor->device().str());
  }
  return first ? first->tensor->device() : Device::cpu();
}

std::string position_str(int64_t index, const Shape& shape) {
  std::string text;
  for (size_t d = shape.size(); d-- > 0;) {
    text = std::to_string(index % shape[d]) + (text.empty() ? "" : ", ") + text;
    index /= shape[d];
  }
  return "[" + text + "]";
}

void throw_no_cuda_kernel(const char* op) { throw Error(std::string(op) + " has no CUDA kernel yet"); }

void throw_unsupported_device(const char* op, Device device) {
  if (device.is_cpu()) throw Error(std::string(op) + " has no CPU kernel");
#ifdef TG_CUDA
  throw_no_cuda_kernel(op);
#else
  throw Error(std::string(op) + ": cannot run on " + device.str() + ": " + no_cuda_message());
#endif
}

}  // namespace tg::ops
