// Tensor: a typed, shaped, strided view onto a ref-counted Storage, plus an autograd slot.
//
// Copying a Tensor copies a handle (like torch.Tensor): both handles see the same data and the
// same autograd state. The view methods here (view, reshape, transpose, permute, slice, ...) are
// the raw ones: they share storage but record nothing for autograd. The differentiable versions
// live in autograd/functions (tg::reshape, tg::transpose, ...); use those on tensors that need
// gradients.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/random.h"
#include "tensor/storage.h"

namespace tg {

struct Node;  // an autograd graph node; defined in autograd/engine.h
class Tensor;
using GradHook = std::function<void(const Tensor& grad)>;

// The shared state behind a Tensor handle.
struct TensorImpl {
  StoragePtr storage;
  Shape shape;
  Shape strides;       // in elements, not bytes
  int64_t offset = 0;  // in elements
  DType dtype = DType::F32;

  // Autograd slot. The tensor layer only stores these; autograd/ gives them meaning.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;     // accumulated gradient of a leaf
  std::shared_ptr<Node> grad_fn;        // the node that produced this tensor, if recorded
  int grad_fn_output = 0;               // which of that node's outputs this tensor is
  std::vector<GradHook> grad_hooks;     // fired once a leaf's gradient is final in a backward pass
  std::string name;                     // optional, used in error messages and state dicts
};

// Maps C++ element types to DTypes for Tensor::data<T>(). bf16 and f16 are stored as uint16_t;
// use data_raw() with an explicit dtype check for those.
template <class T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::F32; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::I32; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::U8; };

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories -------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor arange(int64_t end, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor arange(double start, double end, double step, DType dtype = DType::F32, Device device = Device::cpu());
  // Standard normal / uniform [0, 1) draws from `gen` (the default generator when null), in
  // row-major order, so a seed gives the same tensor on every machine.
  static Tensor randn(const Shape& shape, Generator* gen = nullptr, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor rand(const Shape& shape, Generator* gen = nullptr, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape, DType dtype = DType::F32);
  static Tensor from_ints(const std::vector<int32_t>& values, const Shape& shape);  // i32
  static Tensor scalar(float value, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor empty_like(const Tensor& other);
  static Tensor zeros_like(const Tensor& other);

  // ---- metadata --------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  bool is_contiguous() const;
  const StoragePtr& storage() const { return impl().storage; }
  TensorImpl* impl_ptr() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_shared() const { return impl_; }
  const std::string& name() const { return impl().name; }
  Tensor& set_name(const std::string& name) { impl().name = name; return *this; }

  // Typed pointer to the first element (storage + offset). Throws when T does not match dtype.
  template <class T> T* data() const {
    check_dtype_for_data(DTypeOf<T>::value);
    return static_cast<T*>(impl().storage->data()) + impl().offset;
  }
  void* data_raw() const;  // untyped pointer to the first element

  // ---- views (raw: not recorded by autograd) ---------------------------------------------
  Tensor view(const Shape& shape) const;     // contiguous only; one dimension may be -1
  Tensor reshape(const Shape& shape) const;  // a view when possible, otherwise a contiguous copy
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;  // [start, end)
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const { return slice(dim, start, start + length); }
  Tensor select(int64_t dim, int64_t index) const;  // drops `dim`
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;  // broadcast size-1 dims with stride 0

  // ---- copies ----------------------------------------------------------------------------
  Tensor contiguous() const;  // itself when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  // Copies src into this tensor's elements (same shape; any strides, dtypes and devices).
  void copy_(const Tensor& src);
  void fill_(float value);
  void zero_() { fill_(0.0f); }

  // ---- host access (for tests, printing and small reads) ---------------------------------
  float item() const;                   // one-element tensor as float
  std::vector<float> to_vector() const;  // all elements in row-major order, converted to f32
  std::vector<int32_t> to_int_vector() const;
  std::string str(int max_per_dim = 6) const;

  // ---- autograd slot ---------------------------------------------------------------------
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& requires_grad_(bool value = true);
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& grad) { impl().grad = grad.impl_; }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  int grad_fn_output() const { return impl().grad_fn_output; }
  void set_grad_fn(std::shared_ptr<Node> node, int output = 0) {
    impl().grad_fn = std::move(node);
    impl().grad_fn_output = output;
  }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor detach() const;  // shares storage, no autograd history

 private:
  TensorImpl& impl() const;
  void check_dtype_for_data(DType expected) const;

  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Row-major strides for a contiguous tensor of this shape.
Shape contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);
// Normalizes a possibly negative dimension index against `ndim`; throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace tg
