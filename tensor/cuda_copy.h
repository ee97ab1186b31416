// Element copies and fills on one CUDA device: the device half of tensor/copy.cpp, which picks
// these for tensors that live on the same GPU (and makes that GPU current first).
//
// A plain C++ header (g++ compiles it; no CUDA types). The index helpers below are plain C++ too,
// usable on the host and, in .cu files, on the device; tests check them on the CPU.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/host_device.h"

namespace tg::cuda {

// The most dimensions a copy may have after merge_copy_dims (tensors of the GPT path have <= 4).
constexpr int kMaxCopyDims = 8;

// dst (shape; dst_strides) <- src (shape; src_strides), on the current device, queued on
// cuda::stream(). Pointers are at the first element, strides in elements. Same dtype: a bit copy.
// Otherwise each element converts through f32 exactly as the CPU does (tensor/copy.cpp): bf16 and
// f16 round to nearest even, floats to i32/u8 truncate toward zero and saturate, NaN gives 0.
// Throws when the dims do not merge into kMaxCopyDims, or the destination repeats an element (a
// stride-0 dimension: threads would race to write it).
void copy_strided(DType dst_dtype, void* dst, const Shape& dst_strides, DType src_dtype, const void* src,
                  const Shape& src_strides, const Shape& shape);
// dst (shape; strides) = one element whose bytes are the low dtype_size(dtype) bytes of
// `element_bits` (the caller converts the value with the CPU converter, so both devices store the
// same bytes). Repeated elements (stride 0) are allowed: every thread writes the same bytes.
void fill_strided(DType dtype, void* dst, const Shape& strides, const Shape& shape, uint32_t element_bits);

// Division by a divisor fixed at launch, as a multiply-high, an add and a shift (Granlund and
// Montgomery's method, in the form of PyTorch's IntDivider). A strided copy divides once per
// dimension per element; a 64-bit division is a long software sequence on the GPU and a 32-bit one
// about 20 instructions, this is 3. Exact for divisors in [1, 2^31] and n in [0, 2^31): with
// shift = ceil(log2 d), magic < 2^32, so t = mulhi(n, magic) <= n and t + n cannot overflow.
struct IntDivider {
  uint32_t divisor = 1;
  uint32_t magic = 1;
  uint32_t shift = 0;

  IntDivider() = default;
  explicit IntDivider(uint32_t d) : divisor(d) {
    while (shift < 31 && (uint32_t(1) << shift) < d) shift++;
    magic = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1);
  }
  TG_HOST_DEVICE uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    uint32_t t = __umulhi(n, magic);
#else
    uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(n) * magic) >> 32);
#endif
    return (t + n) >> shift;
  }
};

// The dimensions a strided kernel walks, outermost first: size-1 dimensions dropped, the rest
// ordered by destination stride (largest first, ties keep their order) so that neighbouring threads
// write neighbouring elements, and neighbours merged where both tensors step through them as one
// run (outer stride == inner stride * inner size in both). Only the order of the walk changes, never
// which source element lands where. A contiguous pair of tensors becomes one dimension of stride 1;
// a tensor with no dimension above 1 becomes one dimension of size 1.
struct CopyDims {
  Shape size, dst_stride, src_stride;
  int ndim() const { return static_cast<int>(size.size()); }
};

inline CopyDims merge_copy_dims(const Shape& shape, const Shape& dst_strides, const Shape& src_strides) {
  std::vector<size_t> order;
  for (size_t k = 0; k < shape.size(); k++)
    if (shape[k] != 1) order.push_back(k);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return dst_strides[a] > dst_strides[b]; });
  CopyDims dims;
  for (size_t k : order) {
    if (!dims.size.empty() && dims.dst_stride.back() == dst_strides[k] * shape[k] &&
        dims.src_stride.back() == src_strides[k] * shape[k]) {
      dims.size.back() *= shape[k];  // the outer run continues through this one: take its strides
      dims.dst_stride.back() = dst_strides[k];
      dims.src_stride.back() = src_strides[k];
    } else {
      dims.size.push_back(shape[k]);
      dims.dst_stride.push_back(dst_strides[k]);
      dims.src_stride.push_back(src_strides[k]);
    }
  }
  if (dims.size.empty()) dims = CopyDims{{1}, {1}, {1}};
  return dims;
}

}  // namespace tg::cuda
