// LayerNorm kernels (see ops/cuda/layernorm.h for the contract and ops/cpu/layernorm.cpp for the
// numerics they mirror).
#include "ops/cuda/layernorm.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "ops/cuda/common.cuh"
#include "ops/cuda/vec16.cuh"

namespace tg::cuda {
namespace {

// Rows up to this length get one warp each and live in registers: 32 floats per lane at most.
constexpr int kWarpRowMaxC = 1024;
constexpr int kWarpsPerBlock = 4;
// Longer rows: one block of this many threads per row.
constexpr int kRowBlockThreads = 256;
// The backward splits N into at most this many row blocks (each a 2C-float partial row), and keeps
// the partial rows under kBackwardMaxScratchFloats (16 MB): enough blocks to fill an H100 at the
// GPT sizes, few enough that the second pass reads a small fraction of what the first one did.
constexpr int64_t kBackwardMaxBlocks = 1024;
constexpr int64_t kBackwardMaxScratchFloats = int64_t(1) << 22;
// The backward keeps a block's partial row in shared memory when it fits in this many bytes
// (C <= 5120), in its row of the global scratch otherwise.
constexpr int kBackwardSharedAccBytes = 40 * 1024;
// Second pass: 32 columns per block, the P partial rows split over 32 strided groups.
constexpr int kColumnTile = 32, kPartialGroups = 32;

// dst = weight[c..c+kVec) or ones / bias or zeros when the pointer is null.
template <class T, int kVec>
__device__ __forceinline__ void load_or(float (&dst)[kVec], const T* p, float fill) {
  if (p) {
    load_f32<T, kVec>(dst, p);
  } else {
#pragma unroll
    for (int k = 0; k < kVec; k++) dst[k] = fill;
  }
}

// The row's values as layernorm sees them: inp, or with b (the residual form) inp + b rounded to T,
// which is also stored to residual_out. The branch is uniform: b is null for every thread or none.
template <class T, int kVec>
__device__ __forceinline__ void load_row_values(float (&x)[kVec], T* residual_out, const T* inp, const T* b,
                                                int64_t index) {
  load_f32<T, kVec>(x, inp + index);
  if (b) {
    float y[kVec];
    load_f32<T, kVec>(y, b + index);
#pragma unroll
    for (int k = 0; k < kVec; k++) x[k] = round_to<T>(x[k] + y[k]);
    store_f32<T, kVec>(residual_out + index, x);  // x is exact in T now: the store rounds nothing
  }
}

// The per-row statistics from the three sums, exactly as ops/cpu/layernorm.cpp forms them: the
// deviations from the rounded mean sum to C times its rounding error, which `shift` removes.
struct RowStats {
  float m, shift, s;
};
__device__ __forceinline__ RowStats row_stats(float m, float squares, float deviations, float inv_C, float eps) {
  const float shift = deviations * inv_C;
  const float variance = fmaxf(0.0f, (squares - deviations * shift) * inv_C);
  return {m, shift, 1.0f / sqrtf(variance + eps)};
}

// inp (N,C) [or a, b (N,C)] -> out (N,C) [, residual_out (N,C)]; mean, rstd (N).
// Grid-stride over rows, one warp per row (C <= kWarpRowMaxC). Lane l holds the vectors l, l+32,
// l+64, ... of the row (kIters slots, those at or past C unused and guarded), so the three passes
// over the row (sum; squared deviations; output) read memory once. Statistics by warp_sum, so every
// lane has them; lane 0 writes mean and rstd.
template <class T, int kVec>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    layernorm_forward_warp_kernel(T* __restrict__ residual_out, T* __restrict__ out, float* __restrict__ mean,
                                  float* __restrict__ rstd, const T* __restrict__ inp, const T* __restrict__ b,
                                  const T* __restrict__ weight, const T* __restrict__ bias, int64_t N, int C,
                                  float eps) {
  constexpr int kIters = kWarpRowMaxC / (32 * kVec);
  const int lane = threadIdx.x & 31;
  const float inv_C = 1.0f / static_cast<float>(C);
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  // The row is the same for all 32 lanes, so whole warps leave the loop together and the
  // full-mask shuffles below always see 32 lanes.
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); row < N; row += warps) {
    const int64_t base = row * C;
    float x[kIters][kVec];
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kIters; j++) {
      const int c = (j * 32 + lane) * kVec;
      if (c < C) {  // C % kVec == 0 on the vector path, so the whole vector is inside the row
        load_row_values<T, kVec>(x[j], residual_out, inp, b, base + c);
#pragma unroll
        for (int k = 0; k < kVec; k++) sum += x[j][k];
      }
    }
    const float m = warp_sum(sum) * inv_C;
    float squares = 0.0f, deviations = 0.0f;
#pragma unroll
    for (int j = 0; j < kIters; j++) {
      if ((j * 32 + lane) * kVec < C) {
#pragma unroll
        for (int k = 0; k < kVec; k++) {
          const float d = x[j][k] - m;
          squares += d * d;
          deviations += d;
        }
      }
    }
    const RowStats st = row_stats(m, warp_sum(squares), warp_sum(deviations), inv_C, eps);
#pragma unroll
    for (int j = 0; j < kIters; j++) {
      const int c = (j * 32 + lane) * kVec;
      if (c < C) {
        float w[kVec], bb[kVec], y[kVec];
        load_or<T, kVec>(w, weight ? weight + c : nullptr, 1.0f);
        load_or<T, kVec>(bb, bias ? bias + c : nullptr, 0.0f);
#pragma unroll
        for (int k = 0; k < kVec; k++) y[k] = ((x[j][k] - st.m) - st.shift) * st.s * w[k] + bb[k];
        store_f32<T, kVec>(out + base + c, y);
      }
    }
    if (lane == 0) {
      mean[row] = st.m + st.shift;
      rstd[row] = st.s;
    }
  }
}

// The same for C > kWarpRowMaxC: one block of kRowBlockThreads per row (grid-stride over rows,
// uniform per block so the barriers in block_sum are reached by every thread). Thread t takes the
// vectors t, t + blockDim, ...; the three passes re-read the row (from L1/L2; in the residual form from
// residual_out, which the same thread wrote in pass 1).
template <class T, int kVec>
__global__ void __launch_bounds__(kRowBlockThreads)
    layernorm_forward_block_kernel(T* residual_out, T* __restrict__ out, float* __restrict__ mean,
                                   float* __restrict__ rstd, const T* inp, const T* __restrict__ b,
                                   const T* __restrict__ weight, const T* __restrict__ bias, int64_t N, int C,
                                   float eps) {
  __shared__ float scratch[32];
  const int nvec = C / kVec;
  const float inv_C = 1.0f / static_cast<float>(C);
  const T* values = b ? residual_out : inp;  // what passes 2 and 3 read
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const int64_t base = row * C;
    float sum = 0.0f;
    for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
      float x[kVec];
      load_row_values<T, kVec>(x, residual_out, inp, b, base + static_cast<int64_t>(v) * kVec);
#pragma unroll
      for (int k = 0; k < kVec; k++) sum += x[k];
    }
    const float m = block_sum(sum, scratch) * inv_C;
    float squares = 0.0f, deviations = 0.0f;
    for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
      float x[kVec];
      load_f32<T, kVec>(x, values + base + static_cast<int64_t>(v) * kVec);
#pragma unroll
      for (int k = 0; k < kVec; k++) {
        const float d = x[k] - m;
        squares += d * d;
        deviations += d;
      }
    }
    squares = block_sum(squares, scratch);
    deviations = block_sum(deviations, scratch);
    const RowStats st = row_stats(m, squares, deviations, inv_C, eps);
    for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
      const int c = v * kVec;
      float x[kVec], w[kVec], bb[kVec], y[kVec];
      load_f32<T, kVec>(x, values + base + c);
      load_or<T, kVec>(w, weight ? weight + c : nullptr, 1.0f);
      load_or<T, kVec>(bb, bias ? bias + c : nullptr, 0.0f);
#pragma unroll
      for (int k = 0; k < kVec; k++) y[k] = ((x[k] - st.m) - st.shift) * st.s * w[k] + bb[k];
      store_f32<T, kVec>(out + base + c, y);
    }
    if (threadIdx.x == 0) {
      mean[row] = st.m + st.shift;
      rstd[row] = st.s;
    }
  }
}

// Sums of a and b over the block (blockDim.x a multiple of 32), in a fixed order; every thread gets
// both. scratch holds 64 floats; the leading barrier lets consecutive calls reuse it.
__device__ __forceinline__ float2 block_sum2(float a, float b, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  a = warp_sum(a);
  b = warp_sum(b);
  __syncthreads();
  if (lane == 0) {
    scratch[warp] = a;
    scratch[32 + warp] = b;
  }
  __syncthreads();
  a = lane < warps ? scratch[lane] : 0.0f;
  b = lane < warps ? scratch[32 + lane] : 0.0f;
  return make_float2(warp_sum(a), warp_sum(b));
}

// dout, inp (N,C), weight (C), mean, rstd (N) -> dinp (N,C) +=; partials (P, 2C): block p's sums of
// dout * norm (columns [0, C)) and dout (columns [C, 2C)) over its rows [p*N/P, (p+1)*N/P).
// One block per row chunk (P = gridDim.x); the block walks its rows in order, all threads on one
// row at a time; thread t owns the vectors t, t + blockDim, ... of every row, so it alone updates
// those columns of the block's partial row (in shared memory when acc_in_shared, else directly in
// the block's row of partials) and the updates need no barrier. Per row:
//   norm = (x - mean) * rstd, dnorm = dout * weight,
//   dinp += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)).
template <class T, int kVec>
__global__ void __launch_bounds__(1024)
    layernorm_backward_kernel(T* __restrict__ dinp, float* __restrict__ partials, const T* __restrict__ dout,
                              const T* __restrict__ inp, const T* __restrict__ weight, const float* __restrict__ mean,
                              const float* __restrict__ rstd, int64_t N, int C, bool params, bool acc_in_shared) {
  extern __shared__ float shared_acc[];  // 2C floats when acc_in_shared
  __shared__ float scratch[64];
  const int nvec = C / kVec;
  const int64_t p = blockIdx.x, P = gridDim.x;
  const int64_t row_begin = p * N / P, row_end = (p + 1) * N / P;
  float* acc = params ? (acc_in_shared ? shared_acc : partials + p * 2 * C) : nullptr;
  if (params) {
    for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
#pragma unroll
      for (int k = 0; k < kVec; k++) acc[v * kVec + k] = acc[C + v * kVec + k] = 0.0f;
    }
  }
  for (int64_t row = row_begin; row < row_end; row++) {
    const int64_t base = row * C;
    const float m = mean[row], s = rstd[row];
    float sum_dnorm = 0.0f, sum_dnorm_norm = 0.0f;
    for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
      const int c = v * kVec;
      float dy[kVec], x[kVec], w[kVec];
      load_f32<T, kVec>(dy, dout + base + c);
      load_f32<T, kVec>(x, inp + base + c);
      load_or<T, kVec>(w, weight ? weight + c : nullptr, 1.0f);
#pragma unroll
      for (int k = 0; k < kVec; k++) {
        const float norm = (x[k] - m) * s, dnorm = dy[k] * w[k];
        sum_dnorm += dnorm;
        sum_dnorm_norm += dnorm * norm;
        if (params) {
          acc[c + k] += dy[k] * norm;
          acc[C + c + k] += dy[k];
        }
      }
    }
    if (!dinp) continue;  // uniform: no barrier is skipped by only some threads
    const float2 sums = block_sum2(sum_dnorm, sum_dnorm_norm, scratch);
    const float a = sums.x / static_cast<float>(C), bsum = sums.y / static_cast<float>(C);
    for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
      const int c = v * kVec;
      float dy[kVec], x[kVec], w[kVec], dx[kVec];
      load_f32<T, kVec>(dy, dout + base + c);
      load_f32<T, kVec>(x, inp + base + c);
      load_or<T, kVec>(w, weight ? weight + c : nullptr, 1.0f);
      load_f32<T, kVec>(dx, dinp + base + c);
#pragma unroll
      for (int k = 0; k < kVec; k++) {
        const float norm = (x[k] - m) * s;
        dx[k] += s * (dy[k] * w[k] - a - norm * bsum);
      }
      store_f32<T, kVec>(dinp + base + c, dx);
    }
  }
  if (params && acc_in_shared) {
    float* dst = partials + p * 2 * C;
    for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
#pragma unroll
      for (int k = 0; k < kVec; k++) {
        dst[v * kVec + k] = acc[v * kVec + k];
        dst[C + v * kVec + k] = acc[C + v * kVec + k];
      }
    }
  }
}

// partials (P, 2C) -> dweight (C) += columns [0, C), dbias (C) += columns [C, 2C) (either may be null).
// Block (kColumnTile, kPartialGroups) per 32 columns: thread (x, g) sums rows g, g + 32, ... of
// column x in order; thread (x, 0) then adds the 32 group sums in order and adds the total into the
// gradient (read, add in f32, round once).
template <class T>
__global__ void __launch_bounds__(kColumnTile* kPartialGroups)
    layernorm_param_grad_kernel(T* __restrict__ dweight, T* __restrict__ dbias, const float* __restrict__ partials,
                                int64_t P, int C) {
  __shared__ float group_sum[kPartialGroups][kColumnTile + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  const int64_t width = 2 * static_cast<int64_t>(C);
  float sum = 0.0f;
  if (j < width)
    for (int64_t p = threadIdx.y; p < P; p += kPartialGroups) sum += partials[p * width + j];
  group_sum[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || j >= width) return;
  float total = 0.0f;
#pragma unroll
  for (int g = 0; g < kPartialGroups; g++) total += group_sum[g][threadIdx.x];
  T* dst = j < C ? (dweight ? dweight + j : nullptr) : (dbias ? dbias + (j - C) : nullptr);
  if (dst) *dst = from_f32<T>(to_f32(*dst) + total);
}

void check_row_length(const char* op, int64_t C) {
  if (C < 1 || C > INT_MAX)
    throw Error(std::string(op) + ": C = " + std::to_string(C) + " is outside the CUDA kernels' range [1, " +
                std::to_string(INT_MAX) + "]");
}

template <class T, int kVec>
void launch_forward(T* residual_out, T* out, float* mean, float* rstd, const T* inp, const T* b, const T* weight,
                    const T* bias, int64_t N, int C, float eps) {
  if (C <= kWarpRowMaxC) {
    const unsigned blocks = grid_for(N, kWarpsPerBlock);
    layernorm_forward_warp_kernel<T, kVec><<<blocks, kWarpsPerBlock * 32, 0, stream()>>>(
        residual_out, out, mean, rstd, inp, b, weight, bias, N, C, eps);
    TG_CUDA_CHECK_LAUNCH("layernorm_forward_warp_kernel");
  } else {
    const unsigned blocks = grid_for(N, 1);
    layernorm_forward_block_kernel<T, kVec><<<blocks, kRowBlockThreads, 0, stream()>>>(
        residual_out, out, mean, rstd, inp, b, weight, bias, N, C, eps);
    TG_CUDA_CHECK_LAUNCH("layernorm_forward_block_kernel");
  }
}

// Picks the 16-byte vector path when C is a whole number of vectors and every row pointer is
// 16-byte aligned (then so is every row start and every vector), the element path otherwise.
template <class T>
void dispatch_forward(void* residual_out, void* out, float* mean, float* rstd, const void* inp, const void* b,
                      const void* weight, const void* bias, int64_t N, int64_t C, float eps) {
  constexpr int kVec = kVec16<T>;
  const bool vector = C % kVec == 0 && aligned16(residual_out) && aligned16(out) && aligned16(inp) &&
                      aligned16(b) && aligned16(weight) && aligned16(bias);
  auto* r = static_cast<T*>(residual_out);
  auto* o = static_cast<T*>(out);
  auto* x = static_cast<const T*>(inp);
  auto* y = static_cast<const T*>(b);
  auto* w = static_cast<const T*>(weight);
  auto* bb = static_cast<const T*>(bias);
  if (vector) launch_forward<T, kVec>(r, o, mean, rstd, x, y, w, bb, N, static_cast<int>(C), eps);
  else launch_forward<T, 1>(r, o, mean, rstd, x, y, w, bb, N, static_cast<int>(C), eps);
}

int64_t backward_blocks(int64_t N, int64_t C) {
  return std::max<int64_t>(1, std::min({N, kBackwardMaxBlocks, kBackwardMaxScratchFloats / (2 * C)}));
}

template <class T, int kVec>
void launch_backward(T* dinp, T* dweight, T* dbias, float* scratch, const T* dout, const T* inp, const T* weight,
                     const float* mean, const float* rstd, int64_t N, int C) {
  const bool params = dweight || dbias;
  const int64_t P = params ? backward_blocks(N, C) : std::min<int64_t>(N, 65535 * 8);
  const int nvec = C / kVec;
  const int threads = std::min(1024, std::max(32, (nvec + 31) / 32 * 32));
  const size_t acc_bytes = 2 * static_cast<size_t>(C) * sizeof(float);
  const bool acc_in_shared = params && acc_bytes <= static_cast<size_t>(kBackwardSharedAccBytes);
  layernorm_backward_kernel<T, kVec><<<static_cast<unsigned>(P), threads, acc_in_shared ? acc_bytes : 0, stream()>>>(
      dinp, scratch, dout, inp, weight, mean, rstd, N, C, params, acc_in_shared);
  TG_CUDA_CHECK_LAUNCH("layernorm_backward_kernel");
  if (!params) return;
  const unsigned column_blocks = static_cast<unsigned>((2 * static_cast<int64_t>(C) + kColumnTile - 1) / kColumnTile);
  layernorm_param_grad_kernel<T><<<column_blocks, dim3(kColumnTile, kPartialGroups), 0, stream()>>>(dweight, dbias,
                                                                                                      scratch, P, C);
  TG_CUDA_CHECK_LAUNCH("layernorm_param_grad_kernel");
}

}  // namespace

void layernorm_forward(DType dtype, void* out, float* mean, float* rstd, const void* inp, const void* weight,
                       const void* bias, int64_t N, int64_t C, float eps) {
  check_row_length("layernorm_forward", C);
  if (N == 0) return;
  TG_DISPATCH_FLOAT(dtype, "layernorm_forward", T,
                    dispatch_forward<T>(nullptr, out, mean, rstd, inp, nullptr, weight, bias, N, C, eps));
}

void layernorm_residual_forward(DType dtype, void* residual_out, void* out, float* mean, float* rstd, const void* a,
                                const void* b, const void* weight, const void* bias, int64_t N, int64_t C, float eps) {
  check_row_length("layernorm_residual_forward", C);
  if (N == 0) return;
  TG_DISPATCH_FLOAT(dtype, "layernorm_residual_forward", T,
                    dispatch_forward<T>(residual_out, out, mean, rstd, a, b, weight, bias, N, C, eps));
}

int64_t layernorm_backward_scratch_floats(int64_t N, int64_t C) {
  if (N == 0 || C == 0) return 0;
  return backward_blocks(N, C) * 2 * C;
}

void layernorm_backward(DType dtype, void* dinp, void* dweight, void* dbias, float* scratch, const void* dout,
                        const void* inp, const void* weight, const float* mean, const float* rstd, int64_t N,
                        int64_t C) {
  check_row_length("layernorm_backward", C);
  if (N == 0 || (!dinp && !dweight && !dbias)) return;
  if ((dweight || dbias) && !scratch)
    throw Error("layernorm_backward: dweight or dbias wanted but no scratch given (need " +
                std::to_string(layernorm_backward_scratch_floats(N, C)) + " floats)");
  TG_DISPATCH_FLOAT(dtype, "layernorm_backward", T, {
    constexpr int kVec = kVec16<T>;
    const bool vector = C % kVec == 0 && aligned16(dinp) && aligned16(dout) && aligned16(inp) && aligned16(weight);
    auto* dx = static_cast<T*>(dinp);
    auto* dw = static_cast<T*>(dweight);
    auto* db = static_cast<T*>(dbias);
    auto* dy = static_cast<const T*>(dout);
    auto* x = static_cast<const T*>(inp);
    auto* w = static_cast<const T*>(weight);
    if (vector) launch_backward<T, kVec>(dx, dw, db, scratch, dy, x, w, mean, rstd, N, static_cast<int>(C));
    else launch_backward<T, 1>(dx, dw, db, scratch, dy, x, w, mean, rstd, N, static_cast<int>(C));
  });
}

}  // namespace tg::cuda
