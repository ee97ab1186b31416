// Pooling kernels (see ops/cuda/pool.h for the contract and ops/cpu/pool.cpp for the semantics
// they mirror).
#include "ops/cuda/pool.h"

#include <cmath>

#include "ops/cuda/common.cuh"
#include "tensor/cuda_copy.h"

namespace tg::cuda {
namespace {

constexpr int kThreads = 256;

// x (N,H,W,C) -> out, argmax (N,P,Q,C). One thread per output element, taps in window order
// (row-major), the CPU's update rule: a tap wins when strictly greater or NaN.
template <class T>
__global__ void __launch_bounds__(kThreads)
    maxpool_forward_kernel(T* __restrict__ out, int32_t* __restrict__ argmax, const T* __restrict__ x, int64_t N,
                           int64_t C, MaxPoolShape g) {
  const int64_t total = N * g.P * g.Q * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C, q = (i / C) % g.Q, p = (i / (C * g.Q)) % g.P, n = i / (C * g.Q * g.P);
    const T* image = x + n * g.H * g.W * C;
    float best = -INFINITY;
    int32_t where = -1;  // the first tap inside the input, as the CPU (and PyTorch) start from
    for (int64_t r = 0; r < g.kernel_h; r++) {
      const int64_t h = p * g.stride_h - g.pad_h + r * g.dilation_h;
      if (h < 0 || h >= g.H) continue;
      for (int64_t s = 0; s < g.kernel_w; s++) {
        const int64_t w = q * g.stride_w - g.pad_w + s * g.dilation_w;
        if (w < 0 || w >= g.W) continue;
        const float v = to_f32(image[(h * g.W + w) * C + c]);
        const int32_t index = static_cast<int32_t>(h * g.W + w);
        if (where < 0) where = index;
        if (v > best || v != v) {
          best = v;
          where = index;
        }
      }
    }
    out[i] = from_f32<T>(best);
    argmax[i] = where;
  }
}

// acc (N,H,W,C) f32 += dout (N,P,Q,C) at argmax. One thread per (n, c): outputs in order, so two
// windows routing to one input add in the CPU's order and no two threads touch one element.
template <class T>
__global__ void __launch_bounds__(kThreads)
    maxpool_backward_kernel(float* __restrict__ acc, const T* __restrict__ dout, const int32_t* __restrict__ argmax,
                            int64_t N, int64_t C, int64_t HW, int64_t PQ) {
  const int64_t total = N * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C, n = i / C;
    float* image = acc + n * HW * C;
    for (int64_t o = 0; o < PQ; o++) {
      const int64_t at = (n * PQ + o) * C + c;
      const int32_t where = argmax[at];
      if (where >= 0) image[where * C + c] += to_f32(dout[at]);  // -1: dilated taps all outside
    }
  }
}

// The bins of ops/cuda/pool.h: (begin, end, count) triples.
struct Bin {
  int32_t begin, end, count;
};
__device__ __forceinline__ Bin bin_at(const int32_t* bins, int64_t i) {
  return {bins[3 * i], bins[3 * i + 1], bins[3 * i + 2]};
}

// x (N,H,W,C) -> out (N,P,Q,C). One thread per output element: the window summed row by row in
// f32, then times 1 / divisor, as the CPU.
template <class T>
__global__ void __launch_bounds__(kThreads)
    avgpool_forward_kernel(T* __restrict__ out, const T* __restrict__ x, int64_t N, int64_t H, int64_t W, int64_t C,
                           const int32_t* __restrict__ h_bins, int64_t P, const int32_t* __restrict__ w_bins,
                           int64_t Q) {
  const int64_t total = N * P * Q * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C, q = (i / C) % Q, p = (i / (C * Q)) % P, n = i / (C * Q * P);
    const Bin hb = bin_at(h_bins, p), wb = bin_at(w_bins, q);
    const T* image = x + n * H * W * C;
    float sum = 0.0f;
    for (int64_t h = hb.begin; h < hb.end; h++)
      for (int64_t w = wb.begin; w < wb.end; w++) sum += to_f32(image[(h * W + w) * C + c]);
    out[i] = from_f32<T>(sum * (1.0f / static_cast<float>(hb.count * wb.count)));
  }
}

// The first bin whose end lies past `at` (ends never decrease): where the bins holding `at` start.
__device__ __forceinline__ int64_t first_bin_ending_after(const int32_t* bins, int64_t count, int64_t at) {
  int64_t lo = 0, hi = count;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (bins[3 * mid + 1] > at) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// dx (N,H,W,C) += dout / divisor over the windows holding each input. One thread per input
// element: it starts from dx and adds the windows' shares in (p, q) order, the order in which the
// CPU's scatter reaches that element, so f32 gives the CPU's bits; then one rounding to T.
template <class T>
__global__ void __launch_bounds__(kThreads)
    avgpool_backward_kernel(T* __restrict__ dx, const T* __restrict__ dout, int64_t N, int64_t H, int64_t W, int64_t C,
                            const int32_t* __restrict__ h_bins, int64_t P, const int32_t* __restrict__ w_bins,
                            int64_t Q) {
  const int64_t total = N * H * W * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C, w = (i / C) % W, h = (i / (C * W)) % H, n = i / (C * W * H);
    float acc = to_f32(dx[i]);
    const int64_t q_first = first_bin_ending_after(w_bins, Q, w);
    for (int64_t p = first_bin_ending_after(h_bins, P, h); p < P; p++) {
      const Bin hb = bin_at(h_bins, p);
      if (hb.begin > h) break;  // begins never decrease: no later bin holds h
      for (int64_t q = q_first; q < Q; q++) {
        const Bin wb = bin_at(w_bins, q);
        if (wb.begin > w) break;
        const float inv_divisor = 1.0f / static_cast<float>(hb.count * wb.count);
        // The share rounded on its own (__fmul_rn is never fused into an fma), as the CPU forms it.
        acc += __fmul_rn(to_f32(dout[((n * P + p) * Q + q) * C + c]), inv_divisor);
      }
    }
    dx[i] = from_f32<T>(acc);
  }
}

}  // namespace

void maxpool2d_forward(DType dtype, void* out, int32_t* argmax, const void* x, int64_t N, int64_t C,
                       const MaxPoolShape& g) {
  const int64_t total = N * g.P * g.Q * C;
  if (total == 0) return;
  TG_DISPATCH_FLOAT(dtype, "max_pool2d", T, {
    maxpool_forward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(out), argmax, static_cast<const T*>(x), N, C, g);
    TG_CUDA_CHECK_LAUNCH("maxpool_forward_kernel");
  });
}

int64_t maxpool2d_backward_scratch_floats(DType dtype, int64_t N, int64_t H, int64_t W, int64_t C) {
  return dtype == DType::F32 ? 0 : N * H * W * C;
}

void maxpool2d_backward(DType dtype, void* dx, float* scratch, const void* dout, const int32_t* argmax, int64_t N,
                        int64_t C, const MaxPoolShape& g) {
  const int64_t HW = g.H * g.W, PQ = g.P * g.Q, n_dx = N * HW * C;
  if (N * C == 0 || PQ == 0) return;
  TG_DISPATCH_FLOAT(dtype, "max_pool2d", T, {
    // f32 adds into dx itself; half dtypes into an f32 copy of dx, rounded back once.
    float* acc = dtype == DType::F32 ? reinterpret_cast<float*>(dx) : scratch;
    if (dtype != DType::F32) copy_strided(DType::F32, acc, {1}, dtype, dx, {1}, {n_dx});
    maxpool_backward_kernel<T><<<grid_for(N * C, kThreads), kThreads, 0, stream()>>>(
        acc, static_cast<const T*>(dout), argmax, N, C, HW, PQ);
    TG_CUDA_CHECK_LAUNCH("maxpool_backward_kernel");
    if (dtype != DType::F32) copy_strided(dtype, dx, {1}, DType::F32, acc, {1}, {n_dx});  // rounded once
  });
}

void avgpool2d_forward(DType dtype, void* out, const void* x, int64_t N, int64_t H, int64_t W, int64_t C,
                       const int32_t* h_bins, int64_t P, const int32_t* w_bins, int64_t Q) {
  const int64_t total = N * P * Q * C;
  if (total == 0) return;
  TG_DISPATCH_FLOAT(dtype, "avg_pool2d", T, {
    avgpool_forward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(out), static_cast<const T*>(x), N, H, W, C, h_bins, P, w_bins, Q);
    TG_CUDA_CHECK_LAUNCH("avgpool_forward_kernel");
  });
}

void avgpool2d_backward(DType dtype, void* dx, const void* dout, int64_t N, int64_t H, int64_t W, int64_t C,
                        const int32_t* h_bins, int64_t P, const int32_t* w_bins, int64_t Q) {
  const int64_t total = N * H * W * C;
  if (total == 0) return;
  TG_DISPATCH_FLOAT(dtype, "avg_pool2d", T, {
    avgpool_backward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream()>>>(
        static_cast<T*>(dx), static_cast<const T*>(dout), N, H, W, C, h_bins, P, w_bins, Q);
    TG_CUDA_CHECK_LAUNCH("avgpool_backward_kernel");
  });
}

}  // namespace tg::cuda
