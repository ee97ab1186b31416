// Dispatch by device pair: CPU <-> CPU here; the same GPU: one kernel or memcpy there
// (tensor/cuda_copy.cu); across devices: the bytes travel contiguous, in the source dtype, and the
// destination device converts and scatters them.
#include "tensor/copy.h"

#include <cstdint>
#include <cstring>

#include "tensor/tensor.h"

#ifdef TG_CUDA
#include "tensor/cuda_allocator.h"
#include "tensor/cuda_check.h"
#include "tensor/cuda_copy.h"
#endif

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

// Floats to integers truncate toward zero and saturate, and NaN gives 0: a plain cast is undefined
// outside the target's range, and the GPU (tensor/cuda_copy.cu) does exactly this too.
static int32_t float_to_i32(float v) {
  if (!(v == v)) return 0;
  if (v >= 2147483648.0f) return INT32_MAX;
  if (v <= -2147483648.0f) return INT32_MIN;
  return static_cast<int32_t>(v);
}

static uint8_t float_to_u8(float v) {
  if (!(v > 0.0f)) return 0;  // also NaN
  if (v >= 255.0f) return 255;
  return static_cast<uint8_t>(v);
}

static void store_from_float(void* base, int64_t i, DType dtype, float value) {
  switch (dtype) {
    case DType::F32: static_cast<float*>(base)[i] = value; break;
    case DType::BF16: static_cast<uint16_t*>(base)[i] = f32_to_bf16(value); break;
    case DType::F16: static_cast<uint16_t*>(base)[i] = f32_to_f16(value); break;
    case DType::I32: static_cast<int32_t*>(base)[i] = float_to_i32(value); break;
    case DType::U8: static_cast<uint8_t*>(base)[i] = float_to_u8(value); break;
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

static void copy_on_cpu(Tensor& dst, const Tensor& src) {
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

// Fills n elements of one width with one bit pattern, on every thread when it is large: zero-filled
// gradient buffers of a half-precision model are filled on every step, and converting the value
// once per element made that a fifth of a bf16 step.
template <typename T>
static void fill_bits(T* p, int64_t n, T bits) {
  constexpr int64_t kParallelMin = int64_t{1} << 18;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; i++) p[i] = bits;
}

static void fill_on_cpu(Tensor& dst, float value) {
  void* d = dst.data_raw();
  DType dt = dst.dtype();
  if (dst.is_contiguous()) {
    const int64_t n = dst.numel();
    uint32_t bits = 0;
    store_from_float(&bits, 0, dt, value);  // the element's bytes, converted once
    switch (dtype_size(dt)) {
      case 4: return fill_bits(static_cast<uint32_t*>(d), n, bits);
      case 2: return fill_bits(static_cast<uint16_t*>(d), n, static_cast<uint16_t>(bits));
      default: return fill_bits(static_cast<uint8_t*>(d), n, static_cast<uint8_t>(bits));
    }
  }
  Shape zero(dst.shape().size(), 0);
  for_each_index(dst.shape(), dst.strides(), zero, [&](int64_t di, int64_t) { store_from_float(d, di, dt, value); });
}

#ifdef TG_CUDA

// Both tensors on one GPU.
static void copy_on_gpu(Tensor& dst, const Tensor& src) {
  CudaDeviceGuard guard(dst.device());
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {  // fast path: one memcpy
    if (dst.data_raw() != src.data_raw())
      TG_CUDA_CHECK(cudaMemcpyAsync(dst.data_raw(), src.data_raw(), dst.nbytes(), cudaMemcpyDeviceToDevice, cuda::stream()));
    return;
  }
  cuda::copy_strided(dst.dtype(), dst.data_raw(), dst.strides(), src.dtype(), src.data_raw(), src.strides(), dst.shape());
}

// `to` and `from` are contiguous, of one dtype and size, on different devices. Synchronous copies:
// these carry the loader's batches, checkpoints and small reads, not the hot path. cudaMemcpy runs
// on the legacy default stream, which is cuda::stream(), so it starts after every kernel queued
// before it and every later kernel starts after it: a block the allocator hands out again after
// this returns is safe to reuse.
static void transfer(const Tensor& to, const Tensor& from) {
  Device td = to.device(), fd = from.device();
  if (fd.is_cpu()) {
    CudaDeviceGuard guard(td);
    TG_CUDA_CHECK(cudaMemcpy(to.data_raw(), from.data_raw(), to.nbytes(), cudaMemcpyHostToDevice));
  } else if (td.is_cpu()) {
    CudaDeviceGuard guard(fd);
    TG_CUDA_CHECK(cudaMemcpy(to.data_raw(), from.data_raw(), to.nbytes(), cudaMemcpyDeviceToHost));
  } else {
    // Two GPUs: cudaMemcpyPeer is ordered after all earlier work on both and before later work.
    TG_CUDA_CHECK(cudaMemcpyPeer(to.data_raw(), td.index, from.data_raw(), fd.index, to.nbytes()));
  }
}

// Make the source contiguous on its own device, move its bytes, then convert and scatter on the
// destination device (directly into dst when it is contiguous and of the source's dtype).
static void copy_across_devices(Tensor& dst, const Tensor& src) {
  Tensor packed = src.contiguous();
  bool direct = dst.is_contiguous() && dst.dtype() == src.dtype();
  Tensor landing = direct ? dst : Tensor::empty(src.shape(), src.dtype(), dst.device());
  transfer(landing, packed);
  if (!direct) copy_strided(dst, landing);
}

#endif  // TG_CUDA

void copy_strided(Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  Device dd = dst.device(), sd = src.device();
  if (dd.is_cpu() && sd.is_cpu()) return copy_on_cpu(dst, src);
#ifdef TG_CUDA
  if (dd == sd) return copy_on_gpu(dst, src);
  return copy_across_devices(dst, src);
#else
  throw Error("copy between " + sd.str() + " and " + dd.str() + ": " + no_cuda_message());
#endif
}

void fill_strided(Tensor& dst, float value) {
  if (dst.numel() == 0) return;
  if (dst.device().is_cpu()) return fill_on_cpu(dst, value);
#ifdef TG_CUDA
  uint32_t bits = 0;
  store_from_float(&bits, 0, dst.dtype(), value);  // the CPU converter: both devices store the same bytes
  CudaDeviceGuard guard(dst.device());
  cuda::fill_strided(dst.dtype(), dst.data_raw(), dst.strides(), dst.shape(), bits);
#else
  throw Error("fill on " + dst.device().str() + ": " + no_cuda_message());
#endif
}

}  // namespace tg
