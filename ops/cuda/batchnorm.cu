// BatchNorm kernels (see ops/cuda/batchnorm.h for the contract and ops/cpu/batchnorm.cpp for the
// numerics they mirror).
#include "ops/cuda/batchnorm.h"

#include <algorithm>

#include "ops/cuda/common.cuh"

namespace tg::cuda {
namespace {

// Rows are summed in f32 over blocks of this many rows, the blocks in f64: the CPU's kBlockRows.
constexpr int64_t kBlockRows = 32;
constexpr int64_t kMinChunkRows = 64, kMaxChunks = 1024;
// The partial-sum kernels: 32 channels (one warp, coalesced along C) by 8 chunks per block.
constexpr int kChannelTile = 32, kChunkTile = 8;
constexpr int kThreads = 256;

// A per-channel parameter, or `fill` when absent.
template <class T>
__device__ __forceinline__ float param_or(const T* p, int64_t c, float fill) {
  return p ? to_f32(p[c]) : fill;
}

// The CPU's affine: z = (x - mean) * scale + shift in one fma, so the backward's ReLU mask is the
// forward's.
__device__ __forceinline__ float affine(float x, float mean, float scale, float shift) {
  return fmaf(x - mean, scale, shift);
}

__device__ __forceinline__ int64_t chunk_begin(int64_t k, int64_t chunks, int64_t M) { return k * M / chunks; }

// partial (chunks, 2, C) f64: for chunk k and channel c, the sums over the chunk's rows of a and
// a * b, where (Stats) a = x - x[0], b = a; (Gradient) a = g, the gradient at z (dout, or 0 where the
// ReLU clipped z), b = x - mean. f32 over blocks of kBlockRows rows, the blocks added in f64.
enum class Sums { Stats, Gradient };
template <class T, Sums kSums, bool kRelu>
__global__ void __launch_bounds__(kChannelTile* kChunkTile)
    partial_sums_kernel(double* __restrict__ partial, const T* __restrict__ x, const T* __restrict__ dout,
                        const float* __restrict__ mean, const float* __restrict__ rstd, const T* __restrict__ weight,
                        const T* __restrict__ bias, int64_t M, int64_t C, int64_t chunks) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kChannelTile + threadIdx.x;
  const int64_t k = static_cast<int64_t>(blockIdx.y) * kChunkTile + threadIdx.y;
  if (c >= C || k >= chunks) return;
  float center = 0.0f, scale = 0.0f, shift = 0.0f;
  if (kSums == Sums::Stats) {
    center = to_f32(x[c]);  // the first row
  } else {
    center = mean[c];
    scale = param_or(weight, c, 1.0f) * rstd[c];
    shift = param_or(bias, c, 0.0f);
  }
  double sum_a = 0.0, sum_ab = 0.0;
  const int64_t end = chunk_begin(k + 1, chunks, M);
  for (int64_t first = chunk_begin(k, chunks, M); first < end; first += kBlockRows) {
    float block_a = 0.0f, block_ab = 0.0f;
    const int64_t last = min(end, first + kBlockRows);
    for (int64_t m = first; m < last; m++) {
      const float xv = to_f32(x[m * C + c]);
      if (kSums == Sums::Stats) {
        const float d = xv - center;
        block_a += d;
        block_ab += d * d;
      } else {
        float g = to_f32(dout[m * C + c]);
        if (kRelu && !(affine(xv, center, scale, shift) > 0.0f)) g = 0.0f;
        block_a += g;
        block_ab += g * (xv - center);
      }
    }
    sum_a += static_cast<double>(block_a);
    sum_ab += static_cast<double>(block_ab);
  }
  partial[(k * 2) * C + c] = sum_a;
  partial[(k * 2 + 1) * C + c] = sum_ab;
}

// The chunks of channel c added in order.
__device__ __forceinline__ void chunk_totals(double& a, double& ab, const double* partial, int64_t c, int64_t C,
                                             int64_t chunks) {
  a = 0.0, ab = 0.0;
  for (int64_t k = 0; k < chunks; k++) {
    a += partial[(k * 2) * C + c];
    ab += partial[(k * 2 + 1) * C + c];
  }
}

// mean, rstd (C) from the partial sums of x - x[0]; the running statistics updated, as the CPU.
template <class T>
__global__ void __launch_bounds__(kThreads)
    finish_stats_kernel(float* __restrict__ mean, float* __restrict__ rstd, float* __restrict__ running_mean,
                        float* __restrict__ running_var, const double* __restrict__ partial, const T* __restrict__ x,
                        int64_t M, int64_t C, int64_t chunks, float momentum, float eps) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double sum, squares;
  chunk_totals(sum, squares, partial, c, C, chunks);
  const double rows = static_cast<double>(M);
  const double batch_mean = static_cast<double>(to_f32(x[c])) + sum / rows;
  const double variance = fmax(0.0, (squares - sum * sum / rows) / rows);  // biased
  mean[c] = static_cast<float>(batch_mean);
  rstd[c] = static_cast<float>(1.0 / sqrt(variance + static_cast<double>(eps)));
  if (running_mean) running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * batch_mean);
  if (running_var)
    running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * variance * rows / (rows - 1.0));
}

__global__ void __launch_bounds__(kThreads)
    eval_stats_kernel(float* __restrict__ mean, float* __restrict__ rstd, const float* __restrict__ running_mean,
                      const float* __restrict__ running_var, int64_t C, float eps) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  mean[c] = running_mean[c];
  rstd[c] = static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps)));
}

// x (M,C) -> out (M,C) = [relu] affine(x, mean, weight * rstd, bias).
template <class T, bool kRelu>
__global__ void __launch_bounds__(kThreads)
    normalise_kernel(T* __restrict__ out, const T* __restrict__ x, const float* __restrict__ mean,
                     const float* __restrict__ rstd, const T* __restrict__ weight, const T* __restrict__ bias,
                     int64_t M, int64_t C) {
  const int64_t total = M * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C;
    const float z = affine(to_f32(x[i]), mean[c], param_or(weight, c, 1.0f) * rstd[c], param_or(bias, c, 0.0f));
    out[i] = from_f32<T>(kRelu ? fmaxf(z, 0.0f) : z);
  }
}

// dweight (C) += sum_gx * rstd, dbias (C) += sum_g; coeff (3, C) f32 for the input gradient:
// input_scale = weight * rstd, and in training g_shift = mean(g), x_coeff = rstd^2 mean(g (x - mean)).
template <class T>
__global__ void __launch_bounds__(kThreads)
    finish_gradient_kernel(T* __restrict__ dweight, T* __restrict__ dbias, float* __restrict__ coeff,
                           const double* __restrict__ partial, const T* __restrict__ weight,
                           const float* __restrict__ rstd, int64_t M, int64_t C, int64_t chunks, bool have_sums,
                           bool training) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double sum_g = 0.0, sum_gx = 0.0;
  if (have_sums) chunk_totals(sum_g, sum_gx, partial, c, C, chunks);
  if (dweight) dweight[c] = from_f32<T>(to_f32(dweight[c]) + static_cast<float>(sum_gx * rstd[c]));
  if (dbias) dbias[c] = from_f32<T>(to_f32(dbias[c]) + static_cast<float>(sum_g));
  if (!coeff) return;
  const double rows = static_cast<double>(M);
  coeff[c] = param_or(weight, c, 1.0f) * rstd[c];
  coeff[C + c] = training ? static_cast<float>(sum_g / rows) : 0.0f;
  coeff[2 * C + c] = training ? static_cast<float>(static_cast<double>(rstd[c]) * rstd[c] * sum_gx / rows) : 0.0f;
}

// dx (M,C) += input_scale * (g - g_shift - (x - mean) * x_coeff), as the CPU.
template <class T, bool kRelu>
__global__ void __launch_bounds__(kThreads)
    input_gradient_kernel(T* __restrict__ dx, const T* __restrict__ dout, const T* __restrict__ x,
                          const float* __restrict__ mean, const float* __restrict__ rstd, const T* __restrict__ weight,
                          const T* __restrict__ bias, const float* __restrict__ coeff, int64_t M, int64_t C) {
  const int64_t total = M * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C;
    const float xv = to_f32(x[i]);
    float g = to_f32(dout[i]);
    if (kRelu && !(affine(xv, mean[c], param_or(weight, c, 1.0f) * rstd[c], param_or(bias, c, 0.0f)) > 0.0f)) g = 0.0f;
    dx[i] = from_f32<T>(to_f32(dx[i]) + coeff[c] * (g - coeff[C + c] - (xv - mean[c]) * coeff[2 * C + c]));
  }
}

dim3 partial_grid(int64_t C, int64_t chunks) {
  return dim3(static_cast<unsigned>((C + kChannelTile - 1) / kChannelTile),
              static_cast<unsigned>((chunks + kChunkTile - 1) / kChunkTile));
}
unsigned channel_blocks(int64_t C) { return static_cast<unsigned>((C + kThreads - 1) / kThreads); }

template <class T>
void normalise(T* out, const T* x, const float* mean, const float* rstd, const T* weight, const T* bias, int64_t M,
               int64_t C, bool relu) {
  if (relu) normalise_kernel<T, true><<<grid_for(M * C, kThreads), kThreads, 0, stream()>>>(out, x, mean, rstd, weight, bias, M, C);
  else normalise_kernel<T, false><<<grid_for(M * C, kThreads), kThreads, 0, stream()>>>(out, x, mean, rstd, weight, bias, M, C);
  TG_CUDA_CHECK_LAUNCH("normalise_kernel");
}

}  // namespace

int64_t batchnorm_chunks(int64_t M) { return std::max<int64_t>(1, std::min(kMaxChunks, M / kMinChunkRows)); }

int64_t batchnorm_scratch_floats(int64_t M, int64_t C) { return batchnorm_chunks(M) * 2 * C * 2 + 3 * C; }

void batchnorm_forward_train(DType dtype, void* out, float* mean, float* rstd, float* running_mean, float* running_var,
                             float* scratch, const void* x, const void* weight, const void* bias, int64_t M, int64_t C,
                             float momentum, float eps, bool relu) {
  if (M * C == 0) return;
  const int64_t chunks = batchnorm_chunks(M);
  double* partial = reinterpret_cast<double*>(scratch);
  TG_DISPATCH_FLOAT(dtype, "batch_norm", T, {
    const T* xt = static_cast<const T*>(x);
    partial_sums_kernel<T, Sums::Stats, false><<<partial_grid(C, chunks), dim3(kChannelTile, kChunkTile), 0, stream()>>>(
        partial, xt, nullptr, nullptr, nullptr, nullptr, nullptr, M, C, chunks);
    TG_CUDA_CHECK_LAUNCH("partial_sums_kernel");
    finish_stats_kernel<T><<<channel_blocks(C), kThreads, 0, stream()>>>(mean, rstd, running_mean, running_var, partial,
                                                                          xt, M, C, chunks, momentum, eps);
    TG_CUDA_CHECK_LAUNCH("finish_stats_kernel");
    normalise<T>(static_cast<T*>(out), xt, mean, rstd, static_cast<const T*>(weight), static_cast<const T*>(bias), M,
                 C, relu);
  });
}

void batchnorm_forward_eval(DType dtype, void* out, float* mean, float* rstd, const void* x, const void* weight,
                            const void* bias, const float* running_mean, const float* running_var, int64_t M, int64_t C,
                            float eps, bool relu) {
  if (C == 0) return;
  eval_stats_kernel<<<channel_blocks(C), kThreads, 0, stream()>>>(mean, rstd, running_mean, running_var, C, eps);
  TG_CUDA_CHECK_LAUNCH("eval_stats_kernel");
  if (M == 0) return;
  TG_DISPATCH_FLOAT(dtype, "batch_norm", T, {
    normalise<T>(static_cast<T*>(out), static_cast<const T*>(x), mean, rstd, static_cast<const T*>(weight),
                 static_cast<const T*>(bias), M, C, relu);
  });
}

void batchnorm_backward(DType dtype, void* dx, void* dweight, void* dbias, float* scratch, const void* dout,
                        const void* x, const void* weight, const void* bias, const float* mean, const float* rstd,
                        int64_t M, int64_t C, bool training, bool relu) {
  if (M * C == 0 || (!dx && !dweight && !dbias)) return;
  const int64_t chunks = batchnorm_chunks(M);
  double* partial = reinterpret_cast<double*>(scratch);
  float* coeff = dx ? scratch + chunks * 2 * C * 2 : nullptr;
  const bool sums = dweight || dbias || (dx && training);
  TG_DISPATCH_FLOAT(dtype, "batch_norm", T, {
    const T *xt = static_cast<const T*>(x), *dyt = static_cast<const T*>(dout);
    const T *wt = static_cast<const T*>(weight), *bt = static_cast<const T*>(bias);
    if (sums) {
      const dim3 grid = partial_grid(C, chunks), block(kChannelTile, kChunkTile);
      if (relu)
        partial_sums_kernel<T, Sums::Gradient, true><<<grid, block, 0, stream()>>>(partial, xt, dyt, mean, rstd, wt, bt, M, C, chunks);
      else
        partial_sums_kernel<T, Sums::Gradient, false><<<grid, block, 0, stream()>>>(partial, xt, dyt, mean, rstd, wt, bt, M, C, chunks);
      TG_CUDA_CHECK_LAUNCH("partial_sums_kernel");
    }
    finish_gradient_kernel<T><<<channel_blocks(C), kThreads, 0, stream()>>>(
        static_cast<T*>(dweight), static_cast<T*>(dbias), coeff, partial, wt, rstd, M, C, chunks, sums, training);
    TG_CUDA_CHECK_LAUNCH("finish_gradient_kernel");
    if (dx) {
      if (relu)
        input_gradient_kernel<T, true><<<grid_for(M * C, kThreads), kThreads, 0, stream()>>>(
            static_cast<T*>(dx), dyt, xt, mean, rstd, wt, bt, coeff, M, C);
      else
        input_gradient_kernel<T, false><<<grid_for(M * C, kThreads), kThreads, 0, stream()>>>(
            static_cast<T*>(dx), dyt, xt, mean, rstd, wt, bt, coeff, M, C);
      TG_CUDA_CHECK_LAUNCH("input_gradient_kernel");
    }
  });
}

}  // namespace tg::cuda
