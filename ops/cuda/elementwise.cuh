// The vectorized grid-stride loop that the memory-bound kernels of the elementwise, activation,
// dropout, accumulate and reduce families share (its 16-byte loads and stores are vec16.cuh's).
// Device code; include from .cu files only.
//
// A "body" is a small struct of pointers and scalars, passed to the kernel by value, with
//   template <int W> __device__ void run(int64_t i) const;
// that handles elements [i, i + W). W is 1 (plain loads) or kVec16<T> (one 16-byte access per
// operand: 4 f32 or 8 bf16/f16), so one body serves the vector loop and its scalar tail.
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "ops/cuda/common.cuh"
#include "ops/cuda/vec16.cuh"

namespace tg::cuda {

// p[0, W) += x[0, W): read, add in f32, round once. The gradient convention of every backward kernel.
template <int W, class T>
__device__ __forceinline__ void add_f32(T* p, const float (&x)[W]) {
  float current[W];
  load_f32(current, p);
#pragma unroll
  for (int k = 0; k < W; k++) current[k] += x[k];
  store_f32(p, current);
}

// Grid-stride loop over n elements. With `vectorized`, each thread takes whole packs (pack p covers
// elements [p * kSize, (p + 1) * kSize)), then the n % kSize tail elements one at a time; without,
// every element alone. Threads of a warp take consecutive packs, so each access is coalesced.
template <class T, class Body>
__global__ void pack_loop_kernel(int64_t n, bool vectorized, Body body) {
  constexpr int kSize = kVec16<T>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t scalar_start = 0;
  if (vectorized) {
    const int64_t packs = n / kSize;
    for (int64_t p = first; p < packs; p += stride) body.template run<kSize>(p * kSize);
    scalar_start = packs * kSize;
  }
  for (int64_t i = scalar_start + first; i < n; i += stride) body.template run<1>(i);
}

// aligned16 (common.cuh) of every pointer.
inline bool all_aligned16(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (!aligned16(p)) return false;
  return true;
}

// Runs `body` over n elements on the stream. Pass vectorized = true only when every pointer the
// body reads or writes at element i is 16-byte aligned at element 0: packs start at multiples of
// kSize elements, so they then stay aligned.
template <class T, class Body>
void launch_pack_loop(const char* kernel_name, int64_t n, bool vectorized, const Body& body) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  const int64_t work = vectorized ? std::max<int64_t>(n / kVec16<T>, 1) : n;
  pack_loop_kernel<T, Body><<<grid_for(work, kThreads), kThreads, 0, stream()>>>(n, vectorized, body);
  TG_CUDA_CHECK_LAUNCH(kernel_name);
}

// ---- strided walks -------------------------------------------------------------------------

// Dimensions a strided kernel handles after merging; kernel parameters stay small (200 bytes).
constexpr int kMaxDims = 8;

// A shape and two tensors' element strides over it, innermost dimension last, passed to kernels by
// value. Built by merge_dimensions, which drops size-1 dimensions and merges neighbours that both
// tensors walk as one (so (4, 5) + (4, 5) is one run of 20, and (4, 5) + (5) stays 2-D).
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[2][kMaxDims] = {};
};

// Returns false when more than kMaxDims dimensions remain after merging.
inline bool merge_dimensions(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides0,
                             const std::vector<int64_t>& strides1, StridedLayout& layout) {
  std::vector<int64_t> sizes, first, second;  // innermost first while building
  for (size_t k = shape.size(); k-- > 0;) {
    if (shape[k] == 1) continue;
    if (!sizes.empty() && strides0[k] == first.back() * sizes.back() && strides1[k] == second.back() * sizes.back()) {
      sizes.back() *= shape[k];
      continue;
    }
    sizes.push_back(shape[k]);
    first.push_back(strides0[k]);
    second.push_back(strides1[k]);
  }
  if (sizes.size() > static_cast<size_t>(kMaxDims)) return false;
  layout.ndim = static_cast<int>(sizes.size());
  for (int k = 0; k < layout.ndim; k++) {
    const size_t from = sizes.size() - 1 - static_cast<size_t>(k);  // back to outermost first
    layout.shape[k] = sizes[from];
    layout.strides[0][k] = first[from];
    layout.strides[1][k] = second[from];
  }
  return true;
}

// The two element offsets of flat (row-major over layout.shape) index i. The loop is unrolled over
// kMaxDims so the parameter arrays are indexed with constants (no local-memory copy).
__device__ __forceinline__ void strided_offsets(const StridedLayout& layout, int64_t i, int64_t& offset0,
                                                int64_t& offset1) {
  int64_t rest = i;
  offset0 = 0;
  offset1 = 0;
#pragma unroll
  for (int k = kMaxDims - 1; k >= 0; k--) {
    if (k >= layout.ndim) continue;
    const int64_t index = rest % layout.shape[k];
    rest /= layout.shape[k];
    offset0 += index * layout.strides[0][k];
    offset1 += index * layout.strides[1][k];
  }
}

}  // namespace tg::cuda
