#include "tensor/copy.h"

#include <cstring>

#include "tensor/tensor.h"

namespace tg {

// Reads element `i` of a buffer of `dtype` as float. i32 values above 2^24 lose precision here,
// so integer-to-integer copies take the exact path in copy_element below.
static float load_as_float(const void* base, int64_t i, DType dtype) {
  switch (dtype) {
    case DType::F32: return static_cast<const float*>(base)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    case DType::I32: return static_cast<float>(static_cast<const int32_t*>(base)[i]);
    case DType::U8: return static_cast<float>(static_cast<const uint8_t*>(base)[i]);
  }
  return 0;
}

static void store_from_float(void* base, int64_t i, DType dtype, float value) {
  switch (dtype) {
    case DType::F32: static_cast<float*>(base)[i] = value; break;
    case DType::BF16: static_cast<uint16_t*>(base)[i] = f32_to_bf16(value); break;
    case DType::F16: static_cast<uint16_t*>(base)[i] = f32_to_f16(value); break;
    case DType::I32: static_cast<int32_t*>(base)[i] = static_cast<int32_t>(value); break;
    case DType::U8: static_cast<uint8_t*>(base)[i] = static_cast<uint8_t>(value); break;
  }
}

static void copy_element(void* dst, int64_t di, DType dt, const void* src, int64_t si, DType st) {
  if (dt == st) {
    size_t size = dtype_size(dt);
    std::memcpy(static_cast<char*>(dst) + di * size, static_cast<const char*>(src) + si * size, size);
  } else if (dt == DType::I32 && st == DType::U8) {
    static_cast<int32_t*>(dst)[di] = static_cast<const uint8_t*>(src)[si];
  } else {
    store_from_float(dst, di, dt, load_as_float(src, si, st));
  }
}

// Walks every index of `shape` in row-major order, calling fn(dst_offset, src_offset).
template <class Fn>
static void for_each_index(const Shape& shape, const Shape& dst_strides, const Shape& src_strides, Fn fn) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  size_t nd = shape.size();
  std::vector<int64_t> index(nd, 0);
  int64_t d_off = 0, s_off = 0;
  for (int64_t count = 0; count < n; count++) {
    fn(d_off, s_off);
    for (size_t k = nd; k-- > 0;) {
      if (++index[k] < shape[k]) {
        d_off += dst_strides[k];
        s_off += src_strides[k];
        break;
      }
      d_off -= dst_strides[k] * (shape[k] - 1);
      s_off -= src_strides[k] * (shape[k] - 1);
      index[k] = 0;
    }
  }
}

void copy_strided(Tensor& dst, const Tensor& src) {
  if (!dst.device().is_cpu() || !src.device().is_cpu())
    throw Error("copy between " + src.device().str() + " and " + dst.device().str() + ": " + no_cuda_message());
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    if (dst.data_raw() != src.data_raw()) std::memmove(dst.data_raw(), src.data_raw(), dst.nbytes());
    return;
  }
  void* d = dst.data_raw();
  const void* s = src.data_raw();
  DType dt = dst.dtype(), st = src.dtype();
  for_each_index(dst.shape(), dst.strides(), src.strides(),
                 [&](int64_t di, int64_t si) { copy_element(d, di, dt, s, si, st); });
}

void fill_strided(Tensor& dst, float value) {
  if (!dst.device().is_cpu()) throw Error("fill on " + dst.device().str() + ": " + no_cuda_message());
  void* d = dst.data_raw();
  DType dt = dst.dtype();
  if (dt == DType::F32 && dst.is_contiguous()) {
    float* p = static_cast<float*>(d);
    int64_t n = dst.numel();
    for (int64_t i = 0; i < n; i++) p[i] = value;
    return;
  }
  Shape zero(dst.shape().size(), 0);
  for_each_index(dst.shape(), dst.strides(), zero, [&](int64_t di, int64_t) { store_from_float(d, di, dt, value); });
}

}  // namespace tg
