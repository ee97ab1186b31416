// Fused softmax + cross-entropy kernels (see ops/cuda/crossentropy.h for the contract, and
// ops/cpu/crossentropy.cpp for the numerics they mirror).
#include "ops/cuda/crossentropy.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "ops/cuda/common.cuh"
#include "ops/cuda/vec16.cuh"

namespace tg::cuda {
namespace {

constexpr int kMaxRowThreads = 1024;
constexpr int kReduceThreads = 1024;  // the single block that sums the row losses / counts the rows

// A thread's (or a group's) share of a row: max m of the logits seen and s = sum of exp(x - m).
struct MaxSum {
  float m, s;
};

// The shift of the exps: m, or 0 while every logit seen is -inf (then exp(-inf - 0) = 0 adds
// nothing and a NaN logit still gives NaN, as on the CPU).
__device__ __forceinline__ float exp_shift(float m) { return m == -INFINITY ? 0.0f : m; }

// A sum of exp(x - from) re-expressed as a sum of exp(x - to), to >= from. A sum whose max is still
// -inf is 0 (or NaN from a NaN logit): multiplying by 0 keeps both, where exp(-inf - to) could be
// exp(+large) = inf for a very negative `to` and turn 0 into NaN.
__device__ __forceinline__ float rescale(float s, float from, float to) {
  return from == -INFINITY ? s * 0.0f : s * __expf(from - to);
}

// Two partial (m, s) merged: both sums rescaled to the larger max. Commutative, so both lanes of a
// butterfly get the same bits.
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  return {m, rescale(a.s, a.m, m) + rescale(b.s, b.m, m)};
}

// (m, s) over the block (blockDim.x a multiple of 32): a butterfly in each warp, then warp 0 over
// the warps' results in a fixed order; every thread gets the total. scratch holds 64 floats.
__device__ __forceinline__ MaxSum block_merge(MaxSum x, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1)
    x = merge(x, {__shfl_xor_sync(0xffffffffu, x.m, offset), __shfl_xor_sync(0xffffffffu, x.s, offset)});
  __syncthreads();
  if (lane == 0) {
    scratch[warp] = x.m;
    scratch[32 + warp] = x.s;
  }
  __syncthreads();
  x = lane < warps ? MaxSum{scratch[lane], scratch[32 + lane]} : MaxSum{-INFINITY, 0.0f};
  for (int offset = 16; offset > 0; offset >>= 1)
    x = merge(x, {__shfl_xor_sync(0xffffffffu, x.m, offset), __shfl_xor_sync(0xffffffffu, x.s, offset)});
  return x;
}

// Sum of a double over the block in a fixed order (butterflies, then warp 0 over the warps).
__device__ __forceinline__ double block_sum_double(double x, double* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < warps ? scratch[lane] : 0.0;
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// logits (N,V), targets (N) -> lse (N), row_loss (N). Grid-stride over rows, one block per row
// (uniform per block, so the barriers in block_merge are reached by every thread; an ignored row is
// skipped by the whole block). Thread t reads the vectors t, t + blockDim, ... of the row in one
// pass, keeping its (m, s); thread 0 writes lse = m + log(s) and the row's loss (m - x[target]) +
// log(s) (the difference of two floats first, as on the CPU, so large logits lose nothing to the
// rounding of lse). With label smoothing e > 0 the row's loss is, as on the CPU,
// (1 - e)(m - x[target]) + e (m - mean(x)) + log(s) in double, mean(x) from each thread's logits
// summed in f32 per vector and in double across vectors, then the block's fixed-order double sum.
template <class T, int kVec>
__global__ void __launch_bounds__(kMaxRowThreads)
    crossentropy_forward_kernel(float* __restrict__ lse, float* __restrict__ row_loss, const T* __restrict__ logits,
                                const int32_t* __restrict__ targets, int64_t N, int64_t V, int32_t ignore_index,
                                float label_smoothing) {
  __shared__ float scratch[64];
  __shared__ double sum_scratch[32];
  const int64_t nvec = V / kVec;
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const int32_t target = targets[row];
    if (target == ignore_index) {
      if (threadIdx.x == 0) lse[row] = row_loss[row] = 0.0f;  // never read: ignored rows carry no loss or gradient
      continue;
    }
    const T* x = logits + row * V;
    MaxSum acc{-INFINITY, 0.0f};
    double logit_sum = 0.0;  // only with label smoothing
#pragma unroll 4
    for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
      float values[kVec];
      load_f32<T, kVec>(values, x + v * kVec);
      if (label_smoothing != 0.0f) {
        float vsum = 0.0f;
#pragma unroll
        for (int k = 0; k < kVec; k++) vsum += values[k];
        logit_sum += static_cast<double>(vsum);
      }
      float vmax = values[0];
#pragma unroll
      for (int k = 1; k < kVec; k++) vmax = fmaxf(vmax, values[k]);
      // A larger max rescales the running sum, once per vector.
      if (vmax > acc.m) {
        acc.s = rescale(acc.s, acc.m, vmax);
        acc.m = vmax;
      }
      const float shift = exp_shift(acc.m);
#pragma unroll
      for (int k = 0; k < kVec; k++) acc.s += __expf(values[k] - shift);
    }
    acc = block_merge(acc, scratch);
    // label_smoothing is the same for every thread: the whole block takes the barriers or none does.
    if (label_smoothing != 0.0f) logit_sum = block_sum_double(logit_sum, sum_scratch);
    if (threadIdx.x == 0) {
      const float log_sum = logf(acc.s);
      lse[row] = acc.m + log_sum;
      if (label_smoothing != 0.0f) {
        const double e = label_smoothing, m = acc.m;
        row_loss[row] = static_cast<float>((1.0 - e) * (m - static_cast<double>(to_f32(x[target]))) +
                                           e * (m - logit_sum / static_cast<double>(V)) + log_sum);
      } else {
        row_loss[row] = (acc.m - to_f32(x[target])) + log_sum;
      }
    }
  }
}

// The number of rows not ignored, as a double (exact below 2^53), over one block.
__device__ __forceinline__ double count_rows(const int32_t* targets, int64_t N, int32_t ignore_index, double* scratch) {
  int64_t count = 0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) count += targets[n] != ignore_index;
  return block_sum_double(static_cast<double>(count), scratch);
}

// row_loss (N), targets (N) -> loss (1) = mean of the rows not ignored. One block: thread t sums the
// rows t, t + blockDim, ... in order, in double; then the block's fixed-order tree.
__global__ void __launch_bounds__(kReduceThreads)
    crossentropy_loss_kernel(float* __restrict__ loss, const float* __restrict__ row_loss,
                             const int32_t* __restrict__ targets, int64_t N, int32_t ignore_index) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x)
    if (targets[n] != ignore_index) sum += static_cast<double>(row_loss[n]);
  const double total = block_sum_double(sum, scratch);
  const double count = count_rows(targets, N, ignore_index, scratch);
  // Every row ignored: 0, as on the CPU (a batch of pure padding should not stop training).
  if (threadIdx.x == 0) *loss = count > 0.0 ? static_cast<float>(total / count) : 0.0f;
}

// dloss (1), targets (N) -> scale (1) = dloss / count (0 when every row is ignored). One block.
__global__ void __launch_bounds__(kReduceThreads)
    crossentropy_scale_kernel(float* __restrict__ scale, const float* __restrict__ dloss,
                              const int32_t* __restrict__ targets, int64_t N, int32_t ignore_index) {
  __shared__ double scratch[32];
  const double count = count_rows(targets, N, ignore_index, scratch);
  if (threadIdx.x == 0) *scale = count > 0.0 ? *dloss / static_cast<float>(count) : 0.0f;
}

// logits (N,V), targets (N), lse (N), scale (1) -> dlogits (N,V) (+)= (exp(x - lse) - onehot) * scale;
// with label smoothing e > 0, as the CPU forms it: exp(x - lse) scale - e / V scale, and
// (1 - e) scale more off the target.
// Grid-stride over rows, one block per row; thread t handles the vectors t, t + blockDim, ...: it
// reads each logit (and, accumulating, the gradient) and then writes the gradient at the same
// place, so dlogits may alias logits when !kAccumulate. No __restrict__ on those two for that reason.
template <class T, int kVec, bool kAccumulate>
__global__ void __launch_bounds__(kMaxRowThreads)
    crossentropy_backward_kernel(T* dlogits, const T* logits, const int32_t* __restrict__ targets,
                                 const float* __restrict__ lse, const float* __restrict__ scale, int64_t N, int64_t V,
                                 int32_t ignore_index, float label_smoothing) {
  const int64_t nvec = V / kVec;
  const float s = *scale;
  const float uniform_share = label_smoothing / static_cast<float>(V) * s, target_share = (1.0f - label_smoothing) * s;
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const int32_t target = targets[row];
    T* d = dlogits + row * V;
    if (target == ignore_index) {
      if (!kAccumulate) {  // overwriting: an ignored row's gradient is 0, not whatever the buffer held
        float zeros[kVec];
#pragma unroll
        for (int k = 0; k < kVec; k++) zeros[k] = 0.0f;
        for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) store_f32<T, kVec>(d + v * kVec, zeros);
      }
      continue;
    }
    const T* x = logits + row * V;
    const float l = lse[row];
#pragma unroll 4
    for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
      float values[kVec], grad[kVec];
      load_f32<T, kVec>(values, x + v * kVec);
      if (kAccumulate) load_f32<T, kVec>(grad, d + v * kVec);
#pragma unroll
      for (int k = 0; k < kVec; k++) {
        const bool on_target = v * kVec + k == target;
        float g;
        if (label_smoothing != 0.0f) {
          g = __fmul_rn(__expf(values[k] - l), s) - uniform_share;
          if (on_target) g -= target_share;
        } else {
          g = (__expf(values[k] - l) - (on_target ? 1.0f : 0.0f)) * s;
        }
        grad[k] = kAccumulate ? grad[k] + g : g;
      }
      store_f32<T, kVec>(d + v * kVec, grad);
    }
  }
}

// Threads for a row of nvec vectors: about 4 vectors each (several loads in flight per thread),
// at least one warp, at most kMaxRowThreads.
int row_threads(int64_t nvec) {
  const int64_t threads = (nvec / 4 + 31) / 32 * 32;
  return static_cast<int>(std::max<int64_t>(32, std::min<int64_t>(kMaxRowThreads, threads)));
}

// Targets are i32, so V past INT_MAX could not be indexed by them; grid dimensions bound N.
void check_sizes(const char* op, int64_t N, int64_t V) {
  if (V < 1 || V > INT_MAX || N < 0)
    throw Error(std::string(op) + ": N = " + std::to_string(N) + ", V = " + std::to_string(V) +
                " is outside the CUDA kernels' range (1 <= V <= " + std::to_string(INT_MAX) + ")");
}

template <class T, int kVec>
void launch_forward(float* lse, float* row_loss, const T* logits, const int32_t* targets, int64_t N, int64_t V,
                    int32_t ignore_index, float label_smoothing) {
  crossentropy_forward_kernel<T, kVec><<<grid_for(N, 1), row_threads(V / kVec), 0, stream()>>>(
      lse, row_loss, logits, targets, N, V, ignore_index, label_smoothing);
  TG_CUDA_CHECK_LAUNCH("crossentropy_forward_kernel");
}

template <class T, int kVec>
void launch_backward(T* dlogits, const T* logits, const int32_t* targets, const float* lse, const float* scale,
                     int64_t N, int64_t V, int32_t ignore_index, bool accumulate, float label_smoothing) {
  const unsigned blocks = grid_for(N, 1);
  const int threads = row_threads(V / kVec);
  if (accumulate)
    crossentropy_backward_kernel<T, kVec, true><<<blocks, threads, 0, stream()>>>(dlogits, logits, targets, lse, scale,
                                                                                  N, V, ignore_index, label_smoothing);
  else
    crossentropy_backward_kernel<T, kVec, false><<<blocks, threads, 0, stream()>>>(dlogits, logits, targets, lse,
                                                                                   scale, N, V, ignore_index,
                                                                                   label_smoothing);
  TG_CUDA_CHECK_LAUNCH("crossentropy_backward_kernel");
}

}  // namespace

void crossentropy_forward(DType dtype, float* loss, float* lse, float* row_loss, const void* logits,
                          const int32_t* targets, int64_t N, int64_t V, int32_t ignore_index, float label_smoothing) {
  check_sizes("crossentropy_forward", N, V);
  if (N > 0) {
    TG_DISPATCH_FLOAT(dtype, "crossentropy_forward", T, {
      constexpr int kVec = kVec16<T>;
      auto* x = static_cast<const T*>(logits);
      if (V % kVec == 0 && aligned16(logits)) launch_forward<T, kVec>(lse, row_loss, x, targets, N, V, ignore_index, label_smoothing);
      else launch_forward<T, 1>(lse, row_loss, x, targets, N, V, ignore_index, label_smoothing);
    });
  }
  // Also for N = 0: the loss is then 0 (no row counted), written like any other.
  crossentropy_loss_kernel<<<1, kReduceThreads, 0, stream()>>>(loss, row_loss, targets, N, ignore_index);
  TG_CUDA_CHECK_LAUNCH("crossentropy_loss_kernel");
}

void crossentropy_backward(DType dtype, void* dlogits, const float* dloss, const void* logits, const int32_t* targets,
                           const float* lse, float* scale, int64_t N, int64_t V, int32_t ignore_index,
                           bool accumulate, float label_smoothing) {
  check_sizes("crossentropy_backward", N, V);
  if (N == 0) return;
  if (accumulate && dlogits == logits)
    throw Error("crossentropy_backward: accumulating into dlogits that is logits itself; use the overwriting mode");
  crossentropy_scale_kernel<<<1, kReduceThreads, 0, stream()>>>(scale, dloss, targets, N, ignore_index);
  TG_CUDA_CHECK_LAUNCH("crossentropy_scale_kernel");
  TG_DISPATCH_FLOAT(dtype, "crossentropy_backward", T, {
    constexpr int kVec = kVec16<T>;
    auto* d = static_cast<T*>(dlogits);
    auto* x = static_cast<const T*>(logits);
    if (V % kVec == 0 && aligned16(logits) && aligned16(dlogits))
      launch_backward<T, kVec>(d, x, targets, lse, scale, N, V, ignore_index, accumulate, label_smoothing);
    else
      launch_backward<T, 1>(d, x, targets, lse, scale, N, V, ignore_index, accumulate, label_smoothing);
  });
}

}  // namespace tg::cuda
