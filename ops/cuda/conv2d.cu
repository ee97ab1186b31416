// Convolution kernels (see ops/cuda/conv2d.h for the contract and the GEMM mappings).
#include "ops/cuda/conv2d.h"

#include <algorithm>
#include <string>
#include <type_traits>

#include "ops/cuda/common.cuh"
#include "ops/cuda/mma.cuh"

namespace tg::cuda {
namespace {

// One block computes a BM x BN tile of one group's GEMM, stepping through the reduction BK at a
// time: both operands gathered into shared memory (k contiguous), then multiplied.
constexpr int BM = 64, BN = 64, BK = 32;
constexpr int kThreads = 256;
// The weight gradient: about this many rows of the reduction per slice, at most kMaxSplits slices.
constexpr int64_t kRowsPerSplit = 2048, kMaxSplits = 64;
// dbias: rows per chunk of the column sums, at most kMaxBiasChunks chunks.
constexpr int64_t kBiasChunkRows = 256, kMaxBiasChunks = 1024;

// Shared rows padded against bank conflicts: f32 by one word (the SIMT kernel reads a column of 16
// rows at once); 16-bit types by 8 elements (80-byte rows: the 8 rows of an mma fragment load fall
// in 8 different groups of 4 banks).
template <class T> constexpr int kPad = sizeof(T) == 4 ? 1 : 8;

// Every size as a 32-bit int: the launchers check that every tensor (and the weight gradient's
// scratch) holds fewer than 2^31 elements, so the index arithmetic of the gathers, divisions
// included, runs in 32 bits (64-bit division is several times slower on the GPU).
struct Geom {
  int N, H, W, C, K, R, S, P, Q;
  int stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
  int Cg, Kg;  // channels and filters per group
};

// The three GEMM views. Each gives its sizes (rows M, cols N, depth K of the reduction) and the
// operand elements a(m, k) and b(n, k) of group g (zero outside the image), in two steps: what
// depends on the row alone (a_row(m), b_row(n): the pixel's decomposition, the CUTLASS "optimized
// iterator" precomputation) is worked out once per block, and a(g, row, kk) / b(g, row, kk) finish
// each element from its depth index kk. Then the epilogue, store.
// Index order of the reduction: the fastest index is the channel, contiguous in NHWC memory.
template <class T>
struct Forward {
  const T* x;
  const T* weight;
  const T* bias;
  T* out;
  Geom s;
  __device__ int rows() const { return s.N * s.P * s.Q; }
  __device__ int cols() const { return s.Kg; }
  __device__ int depth() const { return s.R * s.S * s.Cg; }
  // patch row m = (n, p, q): the image's first row n H and the window's corner (h0, w0)
  struct ARow {
    int nH, h0, w0;
  };
  __device__ ARow a_row(int m) const {
    const int q = m % s.Q, p = (m / s.Q) % s.P, n = m / (s.Q * s.P);
    return {n * s.H, p * s.stride_h - s.pad_h, q * s.stride_w - s.pad_w};
  }
  // column kk = (r, s, c)
  __device__ T a(int g, const ARow& row, int kk) const {
    const int c = kk % s.Cg, rs = kk / s.Cg, r = rs / s.S, t = rs % s.S;
    const int h = row.h0 + r * s.dilation_h, w = row.w0 + t * s.dilation_w;
    if (h < 0 || h >= s.H || w < 0 || w >= s.W) return from_f32<T>(0.0f);
    return x[((row.nH + h) * s.W + w) * s.C + g * s.Cg + c];
  }
  // filter k; column kk = (r, s, c)
  using BRow = int;
  __device__ BRow b_row(int k) const { return k; }
  __device__ T b(int g, BRow k, int kk) const {
    const int c = kk % s.Cg, rs = kk / s.Cg;
    return weight[((g * s.Kg + k) * s.Cg + c) * s.R * s.S + rs];
  }
  __device__ void store(int g, int m, int k, float acc, int) const {
    const int channel = g * s.Kg + k;
    out[m * s.K + channel] = from_f32<T>(bias ? acc + to_f32(bias[channel]) : acc);
  }
};

template <class T>
struct InputGradient {
  const T* dout;
  const T* weight;
  T* dx;
  Geom s;
  __device__ int rows() const { return s.N * s.H * s.W; }
  __device__ int cols() const { return s.Cg; }
  __device__ int depth() const { return s.R * s.S * s.Kg; }
  // input pixel m = (n, h, w): the image's first output row n P and the padded position
  struct ARow {
    int nP, hp, wp;
  };
  __device__ ARow a_row(int m) const {
    const int w = m % s.W, h = (m / s.W) % s.H, n = m / (s.W * s.H);
    return {n * s.P, h + s.pad_h, w + s.pad_w};
  }
  // column kk = (r, s, k): the output pixel that tap (r, s) of filter k took from (h, w), if any.
  __device__ T a(int g, const ARow& row, int kk) const {
    const int k = kk % s.Kg, rs = kk / s.Kg, r = rs / s.S, t = rs % s.S;
    const int ph = row.hp - r * s.dilation_h, qw = row.wp - t * s.dilation_w;
    if (ph < 0 || qw < 0 || ph % s.stride_h || qw % s.stride_w) return from_f32<T>(0.0f);
    const int p = ph / s.stride_h, q = qw / s.stride_w;
    if (p >= s.P || q >= s.Q) return from_f32<T>(0.0f);
    return dout[((row.nP + p) * s.Q + q) * s.K + g * s.Kg + k];
  }
  // channel c; column kk = (r, s, k)
  using BRow = int;
  __device__ BRow b_row(int c) const { return c; }
  __device__ T b(int g, BRow c, int kk) const {
    const int k = kk % s.Kg, rs = kk / s.Kg;
    return weight[((g * s.Kg + k) * s.Cg + c) * s.R * s.S + rs];
  }
  __device__ void store(int g, int m, int c, float acc, int) const {
    T* at = dx + m * s.C + g * s.Cg + c;
    *at = from_f32<T>(to_f32(*at) + acc);
  }
};

template <class T>
struct WeightGradient {
  const T* dout;
  const T* x;
  float* partial;  // (splits, K, C/g, R, S)
  Geom s;
  __device__ int rows() const { return s.Kg; }
  __device__ int cols() const { return s.R * s.S * s.Cg; }
  __device__ int depth() const { return s.N * s.P * s.Q; }
  // filter k; output pixel kk = (n, p, q)
  using ARow = int;
  __device__ ARow a_row(int k) const { return k; }
  __device__ T a(int g, ARow k, int kk) const { return dout[kk * s.K + g * s.Kg + k]; }
  // column j = (r, s, c): the channel and the tap's offset from the window's corner
  struct BRow {
    int c, dh, dw;
  };
  __device__ BRow b_row(int j) const {
    const int c = j % s.Cg, rs = j / s.Cg, r = rs / s.S, t = rs % s.S;
    return {c, r * s.dilation_h - s.pad_h, t * s.dilation_w - s.pad_w};
  }
  // output pixel kk = (n, p, q): the input the tap read
  __device__ T b(int g, const BRow& row, int kk) const {
    const int q = kk % s.Q, p = (kk / s.Q) % s.P, n = kk / (s.Q * s.P);
    const int h = p * s.stride_h + row.dh, w = q * s.stride_w + row.dw;
    if (h < 0 || h >= s.H || w < 0 || w >= s.W) return from_f32<T>(0.0f);
    return x[((n * s.H + h) * s.W + w) * s.C + g * s.Cg + row.c];
  }
  __device__ void store(int g, int k, int j, float acc, int split) const {
    const int c = j % s.Cg, rs = j / s.Cg;
    partial[split * (s.K * s.Cg * s.R * s.S) + ((g * s.Kg + k) * s.Cg + c) * s.R * s.S + rs] = acc;
  }
};

// One 32-bit load of two adjacent 16-bit elements (a fragment register).
template <class T>
__device__ __forceinline__ uint32_t load_pair(const T* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// The implicit GEMM of one view. Grid (M tiles, N tiles, groups * splits); block z = split *
// groups + g takes the reduction slice [split * depth / splits, (split + 1) * depth / splits).
// kMma: the 8 warps each own a 32 x 16 piece of the tile (2 x 2 mma.m16n8k16 per 16 of depth);
// otherwise (f32) thread (ty, tx) of 16 x 16 owns rows ty + 16 i and columns tx + 16 j, i, j < 4.
// Either way each output's reduction is summed in depth order: the same bits on every run.
template <class T, class View, bool kMma>
__global__ void __launch_bounds__(kThreads) conv_gemm_kernel(View view, int splits) {
  __shared__ __align__(16) T As[BM][BK + kPad<T>];
  __shared__ __align__(16) T Bs[BN][BK + kPad<T>];
  const int tid = threadIdx.x;
  const int groups = view.s.groups;
  const int g = blockIdx.z % groups, split = blockIdx.z / groups;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int M = view.rows(), Ncols = view.cols(), depth = view.depth();
  // 64-bit products: split * depth may pass 2^31 before the division.
  const int k_begin = static_cast<int>(int64_t(split) * depth / splits);
  const int k_end = static_cast<int>(int64_t(split + 1) * depth / splits);
  const T zero = from_f32<T>(0.0f);

  // SIMT: acc[i][j] is output (ty + 16 i, tx + 16 j); mma: acc[mi * 2 + ni] is the C fragment of
  // m16 tile mi and n8 tile ni of the warp's piece.
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

  // Thread tid loads column tid % BK of the tile rows tid / BK + j * kRowStep, j < kLoads, of both
  // operands at every step: consecutive threads take consecutive depth indices (consecutive channels
  // of one pixel), and the rows' decompositions are worked out here, once.
  constexpr int kRowStep = kThreads / BK, kLoads = BM / kRowStep;
  static_assert(BM == BN && kThreads % BK == 0 && BM % kRowStep == 0, "one load pattern for both tiles");
  const int col = tid % BK, row0 = tid / BK;
  typename View::ARow a_rows[kLoads];
  typename View::BRow b_rows[kLoads];
  bool a_in[kLoads], b_in[kLoads];
#pragma unroll
  for (int j = 0; j < kLoads; j++) {
    const int m = m0 + row0 + j * kRowStep, n = n0 + row0 + j * kRowStep;
    a_in[j] = m < M;
    b_in[j] = n < Ncols;
    a_rows[j] = view.a_row(a_in[j] ? m : 0);
    b_rows[j] = view.b_row(b_in[j] ? n : 0);
  }

  for (int k0 = k_begin; k0 < k_end; k0 += BK) {
    const int kk = k0 + col;
    const bool k_in = kk < k_end;
#pragma unroll
    for (int j = 0; j < kLoads; j++) {
      const int row = row0 + j * kRowStep;
      As[row][col] = a_in[j] && k_in ? view.a(g, a_rows[j], kk) : zero;
      Bs[row][col] = b_in[j] && k_in ? view.b(g, b_rows[j], kk) : zero;
    }
    __syncthreads();
    if constexpr (kMma) {
      const int warp = tid / 32, lane = tid % 32, gq = lane / 4, t = lane % 4;
      const int wm = warp % 2, wn = warp / 2;
#pragma unroll
      for (int kb = 0; kb < BK; kb += 16) {
        uint32_t a[2][4];
#pragma unroll
        for (int mi = 0; mi < 2; mi++) {
          const int r0 = wm * 32 + mi * 16 + gq;
          a[mi][0] = load_pair(&As[r0][kb + 2 * t]);
          a[mi][1] = load_pair(&As[r0 + 8][kb + 2 * t]);
          a[mi][2] = load_pair(&As[r0][kb + 2 * t + 8]);
          a[mi][3] = load_pair(&As[r0 + 8][kb + 2 * t + 8]);
        }
#pragma unroll
        for (int ni = 0; ni < 2; ni++) {
          const int n = wn * 16 + ni * 8 + gq;
          const uint32_t b0 = load_pair(&Bs[n][kb + 2 * t]), b1 = load_pair(&Bs[n][kb + 2 * t + 8]);
#pragma unroll
          for (int mi = 0; mi < 2; mi++) {
            mma_m16n8k16<T>(acc[mi * 2 + ni], a[mi], b0, b1);
          }
        }
      }
    } else {
      const int tx = tid % 16, ty = tid / 16;
#pragma unroll 8
      for (int kk = 0; kk < BK; kk++) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; i++) a[i] = to_f32(As[ty + 16 * i][kk]);
#pragma unroll
        for (int j = 0; j < 4; j++) b[j] = to_f32(Bs[tx + 16 * j][kk]);
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
          for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();
  }

  // Epilogue: every thread stores the outputs it owns (each owned by exactly one thread).
  if constexpr (kMma) {
    const int warp = tid / 32, lane = tid % 32, gq = lane / 4, t = lane % 4;
    const int wm = warp % 2, wn = warp / 2;
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
      for (int ni = 0; ni < 2; ni++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int m = m0 + wm * 32 + mi * 16 + gq + (e >= 2 ? 8 : 0);
          const int n = n0 + wn * 16 + ni * 8 + 2 * t + (e & 1);
          if (m < M && n < Ncols) view.store(g, m, n, acc[mi * 2 + ni][e], split);
        }
  } else {
    const int tx = tid % 16, ty = tid / 16;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
        if (m < M && n < Ncols) view.store(g, m, n, acc[i][j], split);
      }
  }
}

// dweight (total elements) += the splits' partial dweights, added in split order, rounded once.
template <class T>
__global__ void __launch_bounds__(kThreads)
    reduce_splits_kernel(T* __restrict__ dweight, const float* __restrict__ partial, int64_t total, int64_t splits) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int64_t sp = 0; sp < splits; sp++) sum += partial[sp * total + i];
    dweight[i] = from_f32<T>(to_f32(dweight[i]) + sum);
  }
}

// partial (chunks, K) f32: column sums of dout (rows, K) over each chunk of rows, in row order.
template <class T>
__global__ void __launch_bounds__(kThreads)
    bias_partial_kernel(float* __restrict__ partial, const T* __restrict__ dout, int64_t rows, int64_t K,
                        int64_t chunks) {
  const int64_t total = chunks * K;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = i % K, chunk = i / K;
    const int64_t end = (chunk + 1) * rows / chunks;
    float sum = 0.0f;
    for (int64_t m = chunk * rows / chunks; m < end; m++) sum += to_f32(dout[m * K + k]);
    partial[i] = sum;
  }
}

// dbias (K) += the chunks' sums in chunk order, rounded once.
template <class T>
__global__ void __launch_bounds__(kThreads)
    bias_finish_kernel(T* __restrict__ dbias, const float* __restrict__ partial, int64_t K, int64_t chunks) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= K) return;
  float sum = 0.0f;
  for (int64_t chunk = 0; chunk < chunks; chunk++) sum += partial[chunk * K + k];
  dbias[k] = from_f32<T>(to_f32(dbias[k]) + sum);
}

// The sizes as Geom, after checking that the input, the output and the weight gradient's split-K
// scratch each hold fewer than 2^31 elements (the kernels index them in 32 bits).
Geom geom_of(const ConvShape& s, int64_t splits) {
  const int64_t Cg = s.C / s.groups, Kg = s.K / s.groups;
  const struct {
    const char* what;
    int64_t elements;
  } sizes[] = {{"x", s.N * s.H * s.W * s.C}, {"out", s.N * s.P * s.Q * s.K},
               {"the weight gradient's scratch", splits * s.K * Cg * s.R * s.S}};
  for (const auto& size : sizes)
    if (size.elements > INT32_MAX)
      throw Error("conv2d: " + std::string(size.what) + " has " + std::to_string(size.elements) +
                  " elements; the CUDA kernels index at most 2^31 - 1 (use a smaller batch)");
  auto i32 = [](int64_t v) { return static_cast<int>(v); };
  return {i32(s.N),        i32(s.H),        i32(s.W),     i32(s.C),     i32(s.K),          i32(s.R),
          i32(s.S),        i32(s.P),        i32(s.Q),     i32(s.stride_h), i32(s.stride_w), i32(s.pad_h),
          i32(s.pad_w),    i32(s.dilation_h), i32(s.dilation_w), i32(s.groups), i32(Cg),    i32(Kg)};
}

// Launches one view's GEMM: the SIMT kernel for f32, tensor cores for bf16 and f16.
template <class T, class View>
void launch_gemm(const View& view, int64_t M, int64_t Ncols, int64_t splits, const char* name) {
  const int64_t tiles_m = (M + BM - 1) / BM, tiles_n = (Ncols + BN - 1) / BN, z = view.s.groups * splits;
  if (tiles_m > INT32_MAX || tiles_n > 65535 || z > 65535)
    throw Error(std::string("conv2d: the ") + name + " grid (" + std::to_string(tiles_m) + ", " +
                std::to_string(tiles_n) + ", " + std::to_string(z) + ") exceeds CUDA's grid limits");
  const dim3 grid(static_cast<unsigned>(tiles_m), static_cast<unsigned>(tiles_n), static_cast<unsigned>(z));
  constexpr bool kMma = !std::is_same<T, float>::value;
  conv_gemm_kernel<T, View, kMma><<<grid, kThreads, 0, stream()>>>(view, static_cast<int>(splits));
  TG_CUDA_CHECK_LAUNCH(name);
}

int64_t bias_chunks(int64_t rows) {
  return std::max<int64_t>(1, std::min(kMaxBiasChunks, rows / kBiasChunkRows));
}

}  // namespace

void conv2d_forward(DType dtype, void* out, const void* x, const void* weight, const void* bias, const ConvShape& s) {
  if (s.N * s.P * s.Q * s.K == 0) return;
  const Geom g = geom_of(s, 1);
  TG_DISPATCH_FLOAT(dtype, "conv2d", T, {
    Forward<T> view{static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias),
                    static_cast<T*>(out), g};
    launch_gemm<T>(view, s.N * s.P * s.Q, g.Kg, 1, "conv2d forward");
  });
}

void conv2d_backward_input(DType dtype, void* dx, const void* dout, const void* weight, const ConvShape& s) {
  if (s.N * s.H * s.W * s.C == 0) return;
  const Geom g = geom_of(s, 1);
  TG_DISPATCH_FLOAT(dtype, "conv2d", T, {
    InputGradient<T> view{static_cast<const T*>(dout), static_cast<const T*>(weight), static_cast<T*>(dx), g};
    launch_gemm<T>(view, s.N * s.H * s.W, g.Cg, 1, "conv2d input gradient");
  });
}

int64_t conv2d_weight_splits(const ConvShape& s) {
  const int64_t rows = s.N * s.P * s.Q;
  const int64_t by_rows = (rows + kRowsPerSplit - 1) / kRowsPerSplit;
  return std::max<int64_t>(1, std::min({by_rows, kMaxSplits, 65535 / std::max<int64_t>(1, s.groups)}));
}

int64_t conv2d_backward_weight_scratch_floats(const ConvShape& s) {
  return conv2d_weight_splits(s) * s.K * (s.C / s.groups) * s.R * s.S + bias_chunks(s.N * s.P * s.Q) * s.K;
}

void conv2d_backward_weight(DType dtype, void* dweight, void* dbias, float* scratch, const void* dout, const void* x,
                            const ConvShape& s) {
  const int64_t rows = s.N * s.P * s.Q, splits = conv2d_weight_splits(s);
  const int64_t total = s.K * (s.C / s.groups) * s.R * s.S;
  if (rows == 0) return;  // nothing to add
  const Geom g = geom_of(s, splits);
  TG_DISPATCH_FLOAT(dtype, "conv2d", T, {
    if (dweight) {
      WeightGradient<T> view{static_cast<const T*>(dout), static_cast<const T*>(x), scratch, g};
      launch_gemm<T>(view, g.Kg, s.R * s.S * g.Cg, splits, "conv2d weight gradient");
      reduce_splits_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream()>>>(static_cast<T*>(dweight), scratch,
                                                                                      total, splits);
      TG_CUDA_CHECK_LAUNCH("reduce_splits_kernel");
    }
    if (dbias) {
      float* partial = scratch + splits * total;
      const int64_t chunks = bias_chunks(rows);
      bias_partial_kernel<T><<<grid_for(chunks * s.K, kThreads), kThreads, 0, stream()>>>(
          partial, static_cast<const T*>(dout), rows, s.K, chunks);
      TG_CUDA_CHECK_LAUNCH("bias_partial_kernel");
      bias_finish_kernel<T><<<static_cast<unsigned>((s.K + kThreads - 1) / kThreads), kThreads, 0, stream()>>>(
          static_cast<T*>(dbias), partial, s.K, chunks);
      TG_CUDA_CHECK_LAUNCH("bias_finish_kernel");
    }
  });
}

}  // namespace tg::cuda
