// CUDA softmax and log-softmax over the last dimension. A row of up to kWarpRowMax elements is one
// warp's (8 rows to a 256-thread block); a longer row is one 256-thread block's. The passes over a
// row (max, sum of exp, write) re-read it from L1/L2, so device memory sees one read of the input
// and one write of the output. Arithmetic in f32 throughout, mirroring ops/cpu/softmax.cpp.
#include "ops/cuda/softmax.h"

#include <climits>
#include <string>

#include "ops/cuda/common.cuh"

namespace tg::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
// Up to 32 elements per lane: short enough that a warp per row keeps the GPU busy with many rows,
// long enough for attention-sized rows.
constexpr int64_t kWarpRowMax = 1024;

// Which threads share a row: a warp (kBlockPerRow false; `lane` 0..31) or the whole block (`lane`
// 0..255). Sums and maxima over the group use a fixed butterfly / tree, so they are deterministic.
template <bool kBlockPerRow>
struct RowGroup {
  int64_t row;
  int lane, width;
  __device__ RowGroup() {
    if constexpr (kBlockPerRow) {
      row = blockIdx.x;
      lane = threadIdx.x;
      width = blockDim.x;
    } else {
      row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
      lane = threadIdx.x % 32;
      width = 32;
    }
  }
  // Every thread of the group must call these (the block versions contain barriers).
  __device__ float max(float x, float* scratch) const { return kBlockPerRow ? block_max(x, scratch) : warp_max(x); }
  __device__ float sum(float x, float* scratch) const { return kBlockPerRow ? block_sum(x, scratch) : warp_sum(x); }
};

// One row per group: m = max (fmaxf skips NaN, which still reaches the output through exp), then
// s = sum exp(x - m), then out = exp(x - m) / s, or (x - m) - log s for log-softmax. A row of -inf
// has no maximum to subtract: m = 0 makes it 0/0 = NaN, as on the CPU, rather than exp(-inf + inf).
// (x - m) - log s rather than x - (m + log s): for logits of 1e4, m + log s would round to f32's
// spacing there, while x - m is exact for the large entries that matter.
template <class T, bool kLog, bool kBlockPerRow>
__global__ void softmax_forward_kernel(T* out, const T* inp, int64_t rows, int64_t C) {
  __shared__ float scratch[32];
  const RowGroup<kBlockPerRow> group;
  // Warp mode: whole warps leave together (row is uniform in a warp) and use no block barrier.
  if (!kBlockPerRow && group.row >= rows) return;
  const T* x = inp + group.row * C;
  T* y = out + group.row * C;
  float m = -INFINITY;
  for (int64_t c = group.lane; c < C; c += group.width) m = fmaxf(m, to_f32(x[c]));
  m = group.max(m, scratch);
  if (m == -INFINITY) m = 0.0f;
  float s = 0.0f;
  for (int64_t c = group.lane; c < C; c += group.width) s += expf(to_f32(x[c]) - m);
  s = group.sum(s, scratch);
  if constexpr (kLog) {
    const float log_sum = logf(s);
    for (int64_t c = group.lane; c < C; c += group.width) y[c] = from_f32<T>((to_f32(x[c]) - m) - log_sum);
  } else {
    const float inv = 1.0f / s;
    for (int64_t c = group.lane; c < C; c += group.width) y[c] = from_f32<T>(expf(to_f32(x[c]) - m) * inv);
  }
}

// One row per group: total = sum(dout * out) (softmax) or sum(dout) (log-softmax), then
// dinp += out * (dout - total), or dout - exp(out) * total.
template <class T, bool kLog, bool kBlockPerRow>
__global__ void softmax_backward_kernel(T* dinp, const T* out, const T* dout, int64_t rows, int64_t C) {
  __shared__ float scratch[32];
  const RowGroup<kBlockPerRow> group;
  if (!kBlockPerRow && group.row >= rows) return;
  const T* y = out + group.row * C;
  const T* dy = dout + group.row * C;
  T* dx = dinp + group.row * C;
  float total = 0.0f;
  for (int64_t c = group.lane; c < C; c += group.width)
    total += kLog ? to_f32(dy[c]) : to_f32(dy[c]) * to_f32(y[c]);
  total = group.sum(total, scratch);
  for (int64_t c = group.lane; c < C; c += group.width) {
    const float g = to_f32(dy[c]), yc = to_f32(y[c]);
    const float term = kLog ? g - expf(yc) * total : yc * (g - total);
    dx[c] = from_f32<T>(to_f32(dx[c]) + term);
  }
}

// Blocks for `rows` rows; throws naming the op when they exceed the grid.
unsigned row_blocks(const char* op, int64_t rows, bool block_per_row) {
  const int64_t blocks = block_per_row ? rows : (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > INT_MAX)
    throw Error(std::string(op) + ": " + std::to_string(rows) + " rows exceed the CUDA grid (at most " +
                std::to_string(INT_MAX) + " blocks)");
  return static_cast<unsigned>(blocks);
}

template <bool kLog>
void forward(const char* op, DType dtype, void* out, const void* inp, int64_t rows, int64_t C) {
  if (rows == 0 || C == 0) return;
  const bool block_per_row = C > kWarpRowMax;
  const unsigned blocks = row_blocks(op, rows, block_per_row);
  TG_DISPATCH_FLOAT(dtype, op, T, {
    if (block_per_row)
      softmax_forward_kernel<T, kLog, true><<<blocks, kThreads, 0, stream()>>>(static_cast<T*>(out),
                                                                             static_cast<const T*>(inp), rows, C);
    else
      softmax_forward_kernel<T, kLog, false><<<blocks, kThreads, 0, stream()>>>(static_cast<T*>(out),
                                                                              static_cast<const T*>(inp), rows, C);
    TG_CUDA_CHECK_LAUNCH("softmax_forward_kernel");
  });
}

template <bool kLog>
void backward(const char* op, DType dtype, void* dinp, const void* out, const void* dout, int64_t rows, int64_t C) {
  if (rows == 0 || C == 0) return;
  const bool block_per_row = C > kWarpRowMax;
  const unsigned blocks = row_blocks(op, rows, block_per_row);
  TG_DISPATCH_FLOAT(dtype, op, T, {
    if (block_per_row)
      softmax_backward_kernel<T, kLog, true><<<blocks, kThreads, 0, stream()>>>(
          static_cast<T*>(dinp), static_cast<const T*>(out), static_cast<const T*>(dout), rows, C);
    else
      softmax_backward_kernel<T, kLog, false><<<blocks, kThreads, 0, stream()>>>(
          static_cast<T*>(dinp), static_cast<const T*>(out), static_cast<const T*>(dout), rows, C);
    TG_CUDA_CHECK_LAUNCH("softmax_backward_kernel");
  });
}

}  // namespace

void softmax_forward(DType dtype, void* out, const void* inp, int64_t rows, int64_t C) {
  forward<false>("softmax", dtype, out, inp, rows, C);
}
void softmax_backward(DType dtype, void* dinp, const void* out, const void* dout, int64_t rows, int64_t C) {
  backward<false>("softmax_backward", dtype, dinp, out, dout, rows, C);
}
void log_softmax_forward(DType dtype, void* out, const void* inp, int64_t rows, int64_t C) {
  forward<true>("log_softmax", dtype, out, inp, rows, C);
}
void log_softmax_backward(DType dtype, void* dinp, const void* out, const void* dout, int64_t rows, int64_t C) {
  backward<true>("log_softmax_backward", dtype, dinp, out, dout, rows, C);
}

}  // namespace tg::cuda
