// Strided copies with dtype conversion, and fills, on one CUDA device (see tensor/cuda_copy.h).
//
// Three kernels for copies, picked on the host after merge_copy_dims:
//   contiguous: both tensors one run of stride 1 -> dst[i] = convert(src[i]) (same dtype: memcpy)
//   strided32:  up to 8 dims, fewer than 2^31 elements -> index split with IntDivider
//   strided64:  the same with int64 division, for tensors of 2^31 elements or more
// Every kernel is a grid-stride loop over the linear index i (row-major over the merged dims):
// thread t of the grid handles i = t, t + gridsize, ...; each element is read once and written once.
// Offsets are int64: a view of a large storage can sit past 2^31 elements even when it is small.
#include "tensor/cuda_copy.h"

#include <cuda_runtime.h>

#include <climits>
#include <cstring>
#include <string>
#include <type_traits>

#include "tensor/cuda_check.h"
#include "tensor/half_bits.h"

namespace tg::cuda {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535 * 8));
}

// ---- element conversions: the CPU's (tensor/copy.cpp), bit for bit ----------------------------
// bf16 and f16 go through tensor/half_bits.h, the very functions tensor/dtype.cpp's converters
// call: integer operations rather than the cuda_bf16/cuda_fp16 intrinsics, so that NaN payloads
// and every rounding case match the CPU; the tests compare all 2^16 half values and millions of
// random floats bit for bit.

// Truncation toward zero with saturation, NaN -> 0: what tensor/copy.cpp does on the CPU.
__device__ __forceinline__ int32_t f32_to_i32_saturated(float v) {
  if (!(v == v)) return 0;
  if (v >= 2147483648.0f) return INT32_MAX;
  if (v <= -2147483648.0f) return INT32_MIN;
  return static_cast<int32_t>(v);
}

__device__ __forceinline__ uint8_t f32_to_u8_saturated(float v) {
  if (!(v > 0.0f)) return 0;  // also NaN
  if (v >= 255.0f) return 255;
  return static_cast<uint8_t>(v);
}

// Storage type and conversion from/to f32 per dtype. bf16 and f16 are handled as raw uint16_t.
template <DType T> struct Elem;
template <> struct Elem<DType::F32> {
  using type = float;
  static __device__ __forceinline__ float load(float x) { return x; }
  static __device__ __forceinline__ float store(float v) { return v; }
};
template <> struct Elem<DType::BF16> {
  using type = uint16_t;
  static __device__ __forceinline__ float load(uint16_t x) { return bf16_bits_to_f32(x); }
  static __device__ __forceinline__ uint16_t store(float v) { return f32_to_bf16_bits(v); }
};
template <> struct Elem<DType::F16> {
  using type = uint16_t;
  static __device__ __forceinline__ float load(uint16_t x) { return f16_bits_to_f32(x); }
  static __device__ __forceinline__ uint16_t store(float v) { return f32_to_f16_bits(v); }
};
template <> struct Elem<DType::I32> {
  using type = int32_t;
  static __device__ __forceinline__ float load(int32_t x) { return static_cast<float>(x); }  // nearest even, as on the CPU
  static __device__ __forceinline__ int32_t store(float v) { return f32_to_i32_saturated(v); }
};
template <> struct Elem<DType::U8> {
  using type = uint8_t;
  static __device__ __forceinline__ float load(uint8_t x) { return static_cast<float>(x); }
  static __device__ __forceinline__ uint8_t store(float v) { return f32_to_u8_saturated(v); }
};

// Same dtype: the bits unchanged (i32 above 2^24 and NaN payloads survive). Otherwise through f32,
// which is exact for u8 -> i32, the one integer pair the CPU treats specially.
template <DType D, DType S>
__device__ __forceinline__ typename Elem<D>::type convert(typename Elem<S>::type x) {
  if constexpr (D == S) return x;
  else return Elem<D>::store(Elem<S>::load(x));
}

// ---- index arithmetic ----------------------------------------------------------------------

// Merged dims, outermost first. Unused trailing entries are never read (k < ndim checks).
struct Layout32 {
  int ndim;
  IntDivider size[kMaxCopyDims];
  int64_t dst_stride[kMaxCopyDims];
  int64_t src_stride[kMaxCopyDims];
};
struct Layout64 {
  int ndim;
  int64_t size[kMaxCopyDims];
  int64_t dst_stride[kMaxCopyDims];
  int64_t src_stride[kMaxCopyDims];
};

// Element offsets in dst and src of linear index i. The loop is unrolled over the fixed maximum
// with a uniform k < ndim test, so the layout arrays are read at constant indices (no local-memory
// copy). The outermost index is what remains after the inner divisions: it needs none.
__device__ __forceinline__ void offsets(const Layout32& L, uint32_t i, int64_t& d, int64_t& s) {
  d = 0;
  s = 0;
#pragma unroll
  for (int k = kMaxCopyDims - 1; k >= 1; k--) {
    if (k < L.ndim) {
      uint32_t q = L.size[k].div(i);
      int64_t index = static_cast<int64_t>(i - q * L.size[k].divisor);
      d += index * L.dst_stride[k];
      s += index * L.src_stride[k];
      i = q;
    }
  }
  d += static_cast<int64_t>(i) * L.dst_stride[0];
  s += static_cast<int64_t>(i) * L.src_stride[0];
}

__device__ __forceinline__ void offsets(const Layout64& L, int64_t i, int64_t& d, int64_t& s) {
  d = 0;
  s = 0;
#pragma unroll
  for (int k = kMaxCopyDims - 1; k >= 1; k--) {
    if (k < L.ndim) {
      int64_t q = i / L.size[k];
      int64_t index = i - q * L.size[k];
      d += index * L.dst_stride[k];
      s += index * L.src_stride[k];
      i = q;
    }
  }
  d += i * L.dst_stride[0];
  s += i * L.src_stride[0];
}

// ---- kernels -------------------------------------------------------------------------------

// dst (n) <- src (n), both contiguous.
template <DType D, DType S>
__global__ void convert_contiguous_kernel(typename Elem<D>::type* dst, const typename Elem<S>::type* src, int64_t n) {
  int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    dst[i] = convert<D, S>(src[i]);
}

// dst (L) <- src (L). Index is uint32_t with Layout32 (n < 2^31, so i + step < 2^32 never wraps)
// and int64_t with Layout64.
template <DType D, DType S, class Layout, class Index>
__global__ void copy_strided_kernel(typename Elem<D>::type* dst, const typename Elem<S>::type* src, Layout L, Index n) {
  Index step = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t d, s;
    offsets(L, i, d, s);
    dst[d] = convert<D, S>(src[s]);
  }
}

// dst (n) = value, contiguous. T is the element's raw type (uint8_t, uint16_t or uint32_t).
template <class T>
__global__ void fill_contiguous_kernel(T* dst, T value, int64_t n) {
  int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) dst[i] = value;
}

// dst (L) = value; the layout's source strides are zero and unused.
template <class T, class Layout, class Index>
__global__ void fill_strided_kernel(T* dst, T value, Layout L, Index n) {
  Index step = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t d, s;
    offsets(L, i, d, s);
    dst[d] = value;
  }
}

// ---- host side -----------------------------------------------------------------------------

// Calls fn(std::integral_constant<DType, dtype>) so a run-time dtype picks a template instance.
template <class Fn>
void with_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::F32: fn(std::integral_constant<DType, DType::F32>{}); break;
    case DType::BF16: fn(std::integral_constant<DType, DType::BF16>{}); break;
    case DType::F16: fn(std::integral_constant<DType, DType::F16>{}); break;
    case DType::I32: fn(std::integral_constant<DType, DType::I32>{}); break;
    case DType::U8: fn(std::integral_constant<DType, DType::U8>{}); break;
  }
}

int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

void check_layout(const CopyDims& dims, const char* op, const Shape& shape) {
  if (dims.ndim() > kMaxCopyDims)
    throw Error(std::string(op) + " on CUDA: a tensor of shape " + shape_str(shape) + " has " +
                std::to_string(dims.ndim()) + " dimensions that do not merge; at most " + std::to_string(kMaxCopyDims) +
                " are supported (make it contiguous on the CPU first)");
}

Layout32 layout32(const CopyDims& dims) {
  Layout32 L{};
  L.ndim = dims.ndim();
  for (int k = 0; k < L.ndim; k++) {
    L.size[k] = IntDivider(static_cast<uint32_t>(dims.size[k]));
    L.dst_stride[k] = dims.dst_stride[k];
    L.src_stride[k] = dims.src_stride[k];
  }
  return L;
}

Layout64 layout64(const CopyDims& dims) {
  Layout64 L{};
  L.ndim = dims.ndim();
  for (int k = 0; k < L.ndim; k++) {
    L.size[k] = dims.size[k];
    L.dst_stride[k] = dims.dst_stride[k];
    L.src_stride[k] = dims.src_stride[k];
  }
  return L;
}

template <class T>
void launch_fill(void* dst, const CopyDims& dims, int64_t n, uint32_t element_bits) {
  T* out = static_cast<T*>(dst);
  T value = static_cast<T>(element_bits);  // the low bytes: the element as the CPU stored it
  if (dims.ndim() == 1 && dims.dst_stride[0] == 1) {
    fill_contiguous_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(out, value, n);
  } else if (n <= INT32_MAX) {
    fill_strided_kernel<T, Layout32, uint32_t><<<blocks_for(n), kThreads, 0, stream()>>>(out, value, layout32(dims),
                                                                                         static_cast<uint32_t>(n));
  } else {
    fill_strided_kernel<T, Layout64, int64_t><<<blocks_for(n), kThreads, 0, stream()>>>(out, value, layout64(dims), n);
  }
  TG_CUDA_CHECK_LAUNCH("fill_strided_kernel");
}

}  // namespace

void copy_strided(DType dst_dtype, void* dst, const Shape& dst_strides, DType src_dtype, const void* src,
                  const Shape& src_strides, const Shape& shape) {
  int64_t n = numel_of(shape);
  if (n == 0) return;
  CopyDims dims = merge_copy_dims(shape, dst_strides, src_strides);
  for (int k = 0; k < dims.ndim(); k++)
    if (dims.dst_stride[k] == 0 && dims.size[k] > 1)
      throw Error("copy_strided on CUDA: the destination of shape " + shape_str(shape) +
                  " repeats elements (a stride-0, expanded dimension); copy into a contiguous tensor instead");
  check_layout(dims, "copy_strided", shape);

  bool contiguous = dims.ndim() == 1 && dims.dst_stride[0] == 1 && dims.src_stride[0] == 1;
  if (contiguous && dst_dtype == src_dtype) {  // fast path: one device-to-device memcpy
    if (dst != src) TG_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * dtype_size(dst_dtype),
                                                  cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  with_dtype(dst_dtype, [&](auto dst_tag) {
    with_dtype(src_dtype, [&](auto src_tag) {
      constexpr DType D = decltype(dst_tag)::value;
      constexpr DType S = decltype(src_tag)::value;
      auto* out = static_cast<typename Elem<D>::type*>(dst);
      const auto* in = static_cast<const typename Elem<S>::type*>(src);
      if (contiguous) {
        convert_contiguous_kernel<D, S><<<blocks_for(n), kThreads, 0, stream()>>>(out, in, n);
      } else if (n <= INT32_MAX) {
        copy_strided_kernel<D, S, Layout32, uint32_t>
            <<<blocks_for(n), kThreads, 0, stream()>>>(out, in, layout32(dims), static_cast<uint32_t>(n));
      } else {
        copy_strided_kernel<D, S, Layout64, int64_t><<<blocks_for(n), kThreads, 0, stream()>>>(out, in, layout64(dims), n);
      }
      TG_CUDA_CHECK_LAUNCH("copy_strided_kernel");
    });
  });
}

void fill_strided(DType dtype, void* dst, const Shape& strides, const Shape& shape, uint32_t element_bits) {
  int64_t n = numel_of(shape);
  if (n == 0) return;
  CopyDims dims = merge_copy_dims(shape, strides, Shape(shape.size(), 0));
  check_layout(dims, "fill_strided", shape);
  size_t size = dtype_size(dtype);
  // Fast path: a contiguous fill whose bytes are all equal (zeros above all) is a memset.
  unsigned char bytes[4];
  std::memcpy(bytes, &element_bits, 4);
  bool one_byte = true;
  for (size_t b = 1; b < size; b++) one_byte = one_byte && bytes[b] == bytes[0];
  if (dims.ndim() == 1 && dims.dst_stride[0] == 1 && one_byte) {
    TG_CUDA_CHECK(cudaMemsetAsync(dst, bytes[0], static_cast<size_t>(n) * size, stream()));
    return;
  }
  switch (size) {
    case 1: launch_fill<uint8_t>(dst, dims, n, element_bits); break;
    case 2: launch_fill<uint16_t>(dst, dims, n, element_bits); break;
    default: launch_fill<uint32_t>(dst, dims, n, element_bits); break;
  }
}

}  // namespace tg::cuda
