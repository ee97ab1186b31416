// CUDA dst += src for any strides. The dense case (after merging dimensions, both tensors one run
// with stride 1) is a vectorized pack loop; anything else walks the merged strides.
#include "ops/cuda/accumulate.h"

#include <string>

#include "ops/cuda/common.cuh"
#include "ops/cuda/elementwise.cuh"

namespace tg::cuda {

namespace {

constexpr int kThreads = 256;

// dst (n) += src (n), both dense.
template <class T>
struct AccumulateBody {
  T* dst;
  const T* src;
  template <int W>
  __device__ void run(int64_t i) const {
    float x[W];
    load_f32(x, src + i);
    add_f32<W>(dst + i, x);
  }
};

// Grid-stride over the n elements in row-major order of layout.shape, one per thread per step:
// dst[offset0(i)] += src[offset1(i)]. dst has no self-overlap, so no two threads write one element.
template <class T>
__global__ void accumulate_strided_kernel(T* dst, const T* src, int64_t n, StridedLayout layout) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t dst_offset, src_offset;
    strided_offsets(layout, i, dst_offset, src_offset);
    dst[dst_offset] = from_f32<T>(to_f32(dst[dst_offset]) + to_f32(src[src_offset]));
  }
}

}  // namespace

void accumulate_strided(DType dtype, void* dst, const std::vector<int64_t>& dst_strides, const void* src,
                        const std::vector<int64_t>& src_strides, const std::vector<int64_t>& shape) {
  const char* op = "accumulate";
  int64_t n = 1;
  for (int64_t size : shape) n *= size;
  if (n == 0) return;
  StridedLayout layout;
  if (!merge_dimensions(shape, dst_strides, src_strides, layout))
    throw Error(std::string(op) + ": dst and src need more than " + std::to_string(kMaxDims) +
                " dimensions after merging; the CUDA kernel handles at most " + std::to_string(kMaxDims));
  // One element, or one run that both walk with stride 1.
  const bool dense = layout.ndim == 0 || (layout.ndim == 1 && layout.strides[0][0] == 1 && layout.strides[1][0] == 1);
  TG_DISPATCH_FLOAT(dtype, op, T, {
    if (dense) {
      launch_pack_loop<T>("accumulate_dense", n, all_aligned16({dst, src}),
                          AccumulateBody<T>{static_cast<T*>(dst), static_cast<const T*>(src)});
    } else {
      accumulate_strided_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream()>>>(
          static_cast<T*>(dst), static_cast<const T*>(src), n, layout);
      TG_CUDA_CHECK_LAUNCH("accumulate_strided_kernel");
    }
  });
}

}  // namespace tg::cuda
