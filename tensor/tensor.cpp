#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <numeric>
#include <ostream>
#include <sstream>

#include "tensor/copy.h"

namespace tg {

// ---- shape helpers -------------------------------------------------------------------------

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t wrapped = dim < 0 ? dim + ndim : dim;
  if (wrapped < 0 || wrapped >= ndim)
    throw Error(std::string(op) + ": dimension " + std::to_string(dim) + " out of range for a tensor with " +
                std::to_string(ndim) + " dimensions");
  return wrapped;
}

static void check_shape_valid(const Shape& shape, const char* op) {
  for (int64_t s : shape)
    if (s < 0) throw Error(std::string(op) + ": negative size in shape " + shape_str(shape));
}

// ---- construction --------------------------------------------------------------------------

TensorImpl& Tensor::impl() const {
  if (!impl_) throw Error("use of an undefined tensor (default-constructed or moved-from)");
  return *impl_;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape_valid(shape, "Tensor::empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, float value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0f, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0f, dtype, device); }
Tensor Tensor::scalar(float value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor Tensor::arange(int64_t end, DType dtype, Device device) { return arange(0, static_cast<double>(end), 1, dtype, device); }

Tensor Tensor::arange(double start, double end, double step, DType dtype, Device device) {
  TG_CHECK(step != 0, "Tensor::arange: step must be non-zero");
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; i++) values[i] = static_cast<float>(start + step * static_cast<double>(i));
  return from_vector(values, {n}, dtype).to(device);
}

Tensor Tensor::randn(const Shape& shape, Generator* gen, DType dtype, Device device) {
  Generator& g = gen ? *gen : default_generator();
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (float& v : values) v = g.normal();
  return from_vector(values, shape, dtype).to(device);
}

Tensor Tensor::rand(const Shape& shape, Generator* gen, DType dtype, Device device) {
  Generator& g = gen ? *gen : default_generator();
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (float& v : values) v = g.uniform();
  return from_vector(values, shape, dtype).to(device);
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, DType dtype) {
  TG_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "Tensor::from_vector: " + std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  Tensor f32 = empty(shape, DType::F32);
  if (!values.empty()) std::memcpy(f32.data_raw(), values.data(), values.size() * sizeof(float));
  return dtype == DType::F32 ? f32 : f32.to(dtype);
}

Tensor Tensor::from_ints(const std::vector<int32_t>& values, const Shape& shape) {
  TG_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
           "Tensor::from_vector: " + std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  Tensor t = empty(shape, DType::I32);
  if (!values.empty()) std::memcpy(t.data_raw(), values.data(), values.size() * sizeof(int32_t));
  return t;
}

Tensor Tensor::empty_like(const Tensor& other) { return empty(other.shape(), other.dtype(), other.device()); }
Tensor Tensor::zeros_like(const Tensor& other) { return zeros(other.shape(), other.dtype(), other.device()); }

// ---- metadata ------------------------------------------------------------------------------

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "Tensor::size")]; }

int64_t Tensor::numel() const { return shape_numel(shape()); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (shape()[i] != 1 && strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::data_raw() const {
  return static_cast<char*>(impl().storage->data()) + impl().offset * static_cast<int64_t>(dtype_size(impl().dtype));
}

void Tensor::check_dtype_for_data(DType expected) const {
  if (dtype() != expected)
    throw Error(std::string("Tensor::data: tensor holds ") + dtype_name(dtype()) + " but " + dtype_name(expected) +
                " was asked for");
}

// ---- views ---------------------------------------------------------------------------------

static Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Resolves one -1 in `shape` so that it holds `numel` elements.
static Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < out.size(); i++) {
    if (out[i] == -1) {
      if (infer_at >= 0) throw Error(std::string(op) + ": only one dimension can be -1 in " + shape_str(shape));
      infer_at = static_cast<int64_t>(i);
    } else if (out[i] < 0) {
      throw Error(std::string(op) + ": negative size in " + shape_str(shape));
    } else {
      known *= out[i];
    }
  }
  if (infer_at >= 0) {
    if (known == 0 || numel % known != 0)
      throw Error(std::string(op) + ": cannot fit " + std::to_string(numel) + " elements into " + shape_str(shape));
    out[infer_at] = numel / known;
  }
  if (shape_numel(out) != numel)
    throw Error(std::string(op) + ": shape " + shape_str(shape) + " holds " + std::to_string(shape_numel(out)) +
                " elements but the tensor has " + std::to_string(numel));
  return out;
}

Tensor Tensor::view(const Shape& shape) const {
  if (!is_contiguous())
    throw Error("Tensor::view: tensor of shape " + shape_str(this->shape()) +
                " is not contiguous; use reshape() or contiguous() first");
  Shape out = infer_shape(shape, numel(), "Tensor::view");
  return make_view(*this, out, contiguous_strides(out), offset());
}

Tensor Tensor::reshape(const Shape& shape) const { return is_contiguous() ? view(shape) : contiguous().view(shape); }

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> dims(static_cast<size_t>(dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(dim0, dim(), "Tensor::transpose")], dims[wrap_dim(dim1, dim(), "Tensor::transpose")]);
  return permute(dims);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  TG_CHECK(static_cast<int64_t>(dims.size()) == dim(),
           "Tensor::permute: got " + std::to_string(dims.size()) + " dimensions for a tensor of shape " + shape_str(shape()));
  Shape shape_out(dims.size()), strides_out(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); i++) {
    int64_t d = wrap_dim(dims[i], dim(), "Tensor::permute");
    TG_CHECK(!seen[d], "Tensor::permute: dimension " + std::to_string(d) + " repeated");
    seen[d] = true;
    shape_out[i] = shape()[d];
    strides_out[i] = strides()[d];
  }
  return make_view(*this, shape_out, strides_out, offset());
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "Tensor::slice");
  TG_CHECK(step > 0, "Tensor::slice: step must be positive, got " + std::to_string(step));
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape_out = shape(), strides_out = strides();
  shape_out[d] = (end - start + step - 1) / step;
  strides_out[d] = strides()[d] * step;
  return make_view(*this, shape_out, strides_out, offset() + start * strides()[d]);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "Tensor::select");
  int64_t n = shape()[d];
  if (index < 0) index += n;
  TG_CHECK(index >= 0 && index < n, "Tensor::select: index " + std::to_string(index) + " out of range for size " + std::to_string(n));
  Shape shape_out = shape(), strides_out = strides();
  shape_out.erase(shape_out.begin() + d);
  strides_out.erase(strides_out.begin() + d);
  return make_view(*this, shape_out, strides_out, offset() + index * strides()[d]);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "Tensor::unsqueeze");
  Shape shape_out = shape(), strides_out = strides();
  int64_t stride = d < dim() ? strides()[d] * shape()[d] : 1;
  shape_out.insert(shape_out.begin() + d, 1);
  strides_out.insert(strides_out.begin() + d, stride);
  return make_view(*this, shape_out, strides_out, offset());
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "Tensor::squeeze");
  TG_CHECK(shape()[d] == 1, "Tensor::squeeze: dimension " + std::to_string(d) + " has size " + std::to_string(shape()[d]) + ", not 1");
  return select(d, 0);
}

Tensor Tensor::expand(const Shape& shape_to) const {
  TG_CHECK(static_cast<int64_t>(shape_to.size()) >= dim(),
           "Tensor::expand: cannot expand " + shape_str(shape()) + " to fewer dimensions " + shape_str(shape_to));
  size_t lead = shape_to.size() - shape().size();
  Shape strides_out(shape_to.size(), 0);
  for (size_t i = 0; i < shape().size(); i++) {
    int64_t from = shape()[i], to = shape_to[lead + i];
    if (from == to) strides_out[lead + i] = strides()[i];
    else if (from == 1) strides_out[lead + i] = 0;
    else throw Error("Tensor::expand: cannot expand " + shape_str(shape()) + " to " + shape_str(shape_to));
  }
  return make_view(*this, shape_to, strides_out, offset());
}

// ---- copies --------------------------------------------------------------------------------

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device device_to) const {
  if (device_to == device()) return *this;
  Tensor out = empty(shape(), dtype(), device_to);
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(DType dtype_to) const {
  if (dtype_to == dtype()) return *this;
  Tensor out = empty(shape(), dtype_to, device());
  out.copy_(*this);
  return out;
}

void Tensor::copy_(const Tensor& src) {
  TG_CHECK(src.shape() == shape(), "Tensor::copy_: source shape " + shape_str(src.shape()) +
                                       " does not match destination shape " + shape_str(shape()));
  copy_strided(*this, src);
}

void Tensor::fill_(float value) { fill_strided(*this, value); }

// ---- host access ---------------------------------------------------------------------------

std::vector<float> Tensor::to_vector() const {
  Tensor host = to(Device::cpu()).to(DType::F32).contiguous();
  const float* p = host.data<float>();
  return std::vector<float>(p, p + host.numel());
}

std::vector<int32_t> Tensor::to_int_vector() const {
  Tensor host = to(Device::cpu()).to(DType::I32).contiguous();
  const int32_t* p = host.data<int32_t>();
  return std::vector<int32_t>(p, p + host.numel());
}

float Tensor::item() const {
  TG_CHECK(numel() == 1, "Tensor::item: tensor of shape " + shape_str(shape()) + " has " + std::to_string(numel()) +
                             " elements, expected 1");
  return to_vector()[0];
}

// Prints nested brackets, eliding the middle of long dimensions like numpy does.
static void print_dim(std::ostringstream& os, const std::vector<float>& v, const Shape& shape, const Shape& strides,
                      size_t d, int64_t base, int max_per_dim, bool integer) {
  if (d == shape.size()) {
    if (integer) os << static_cast<int64_t>(v[base]);
    else os << std::setprecision(4) << v[base];
    return;
  }
  os << "[";
  int64_t n = shape[d];
  for (int64_t i = 0; i < n; i++) {
    if (n > max_per_dim && i == max_per_dim / 2) {
      os << "..., ";
      i = n - max_per_dim / 2 - 1;
      continue;
    }
    print_dim(os, v, shape, strides, d + 1, base + i * strides[d], max_per_dim, integer);
    if (i + 1 < n) os << (d + 1 == shape.size() ? ", " : ",\n" + std::string(d + 8, ' '));
  }
  os << "]";
}

std::string Tensor::str(int max_per_dim) const {
  if (!defined()) return "tensor(undefined)";
  std::vector<float> v = to_vector();
  std::ostringstream os;
  os << "tensor(";
  print_dim(os, v, shape(), contiguous_strides(shape()), 0, 0, max_per_dim, !is_floating(dtype()));
  os << ", shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype()) << ", device=" << device().str();
  if (requires_grad()) os << ", requires_grad";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

// ---- autograd slot -------------------------------------------------------------------------

Tensor& Tensor::requires_grad_(bool value) {
  if (value && !is_floating(dtype()))
    throw Error(std::string("requires_grad_: only floating-point tensors can require gradients, this one is ") +
                dtype_name(dtype()));
  impl().requires_grad = value;
  return *this;
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

}  // namespace tg
