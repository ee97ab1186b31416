// What the GEMM kernels share (device code, included by ops/cuda/gemm*.cu only): the parameter
// block, the order tiles are visited in, and the epilogue that turns f32 accumulators into output
// elements. See ops/cuda/gemm.h for the contract.
#pragma once
#include "ops/cuda/common.cuh"
#include "ops/cuda/gemm.h"

namespace tg::cuda::gemm_detail {

// Everything a GEMM kernel needs, passed by value. Strides and sizes are int64: row * ld passes
// 2^31 for large matrices (16384 x 50304 logits).
struct GemmParams {
  int64_t M, N, K;
  const void* A;
  int64_t lda, stride_a;
  const void* B;
  int64_t ldb, stride_b;
  void* C;
  int64_t ldc, stride_c;
  int64_t batch;
  float alpha, beta;
  const void* bias;
  void* pre_gelu;
  const void* residual;
  bool gelu;
  // The tensor-core kernel's per-operand choice: 16-byte cp.async or element-wise loads.
  bool a_vector, b_vector;
  // C, pre_gelu, residual and bias may be read and written 16 bytes at a time (aligned bases,
  // ldc and stride_c multiples of 16 bytes); edge columns still go element by element.
  bool epilogue_vector;
};

// Host-side entry points of the two kernel files (ops/cuda/gemm.cu picks one by dtype).
template <class T> void launch_gemm_tensorcore(const GemmParams& p, bool trans_a, bool trans_b);
void launch_gemm_simt(const GemmParams& p, bool trans_a, bool trans_b);

// Output tile `tile` of a tiles_m x tiles_n grid in grouped order: tiles go down a band of
// kGroupRows tile rows before moving right, so blocks running at the same time share A rows and
// B columns in L2 (a plain row-major order streams all of B once per tile row).
struct TileCoord {
  int64_t m, n;
};
__device__ __forceinline__ TileCoord grouped_tile(int64_t tile, int64_t tiles_m, int64_t tiles_n) {
  constexpr int64_t kGroupRows = 8;
  const int64_t per_group = kGroupRows * tiles_n;
  const int64_t first_m = (tile / per_group) * kGroupRows;
  const int64_t rows = min(tiles_m - first_m, kGroupRows);
  const int64_t in_group = tile % per_group;
  return {first_m + in_group % rows, in_group / rows};
}

// GELU, tanh approximation, in the sigmoid form the CPU kernel uses (ops/cpu/activation.cpp):
// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3), which keeps full
// relative precision for negative x; past |2u| = 80 the value is settled (0 or x).
__device__ __forceinline__ float gelu_value(float x) {
  const float arg = -2.0f * 0.7978845608028654f * (x + 0.044715f * x * x * x);
  if (arg > 80.0f) return 0.0f;
  return x / (1.0f + expf(fmaxf(arg, -80.0f)));
}

// W consecutive elements, aligned to their size, for 16-byte loads and stores.
template <class T, int W> struct alignas(sizeof(T) * W) Pack {
  T v[W];
};

// The epilogue for W consecutive output columns [col, col + W) of row `row` of batch item `item`:
// acc holds the raw f32 dot products. With `vector`, all W columns are inside N and every tensor
// may be accessed as one Pack; otherwise each column is checked against N and accessed alone.
template <class T, int W>
__device__ __forceinline__ void epilogue_store(const GemmParams& p, int64_t item, int64_t row, int64_t col,
                                               const float (&acc)[W], bool vector) {
  const int64_t offset = item * p.stride_c + row * p.ldc + col;
  T* out = static_cast<T*>(p.C) + offset;
  const T* residual = p.residual ? static_cast<const T*>(p.residual) + offset : nullptr;
  T* pre = p.pre_gelu ? static_cast<T*>(p.pre_gelu) + offset : nullptr;
  const T* bias = p.bias ? static_cast<const T*>(p.bias) + col : nullptr;

  float v[W];
#pragma unroll
  for (int e = 0; e < W; e++) v[e] = p.alpha * acc[e];
  if (vector) {
    Pack<T, W> pack;
    if (p.beta != 0.0f) {
      pack = *reinterpret_cast<const Pack<T, W>*>(out);
#pragma unroll
      for (int e = 0; e < W; e++) v[e] += p.beta * to_f32(pack.v[e]);
    }
    if (bias) {
      pack = *reinterpret_cast<const Pack<T, W>*>(bias);
#pragma unroll
      for (int e = 0; e < W; e++) v[e] += to_f32(pack.v[e]);
    }
    if (p.gelu) {
#pragma unroll
      for (int e = 0; e < W; e++) {
        pack.v[e] = from_f32<T>(v[e]);
        v[e] = gelu_value(to_f32(pack.v[e]));
      }
      if (pre) *reinterpret_cast<Pack<T, W>*>(pre) = pack;
    }
    if (residual) {
      pack = *reinterpret_cast<const Pack<T, W>*>(residual);
#pragma unroll
      for (int e = 0; e < W; e++) v[e] += to_f32(pack.v[e]);
    }
#pragma unroll
    for (int e = 0; e < W; e++) pack.v[e] = from_f32<T>(v[e]);
    *reinterpret_cast<Pack<T, W>*>(out) = pack;
    return;
  }
#pragma unroll
  for (int e = 0; e < W; e++) {
    if (col + e >= p.N) break;
    float x = v[e];
    if (p.beta != 0.0f) x += p.beta * to_f32(out[e]);
    if (bias) x += to_f32(bias[e]);
    if (p.gelu) {
      const T u = from_f32<T>(x);
      if (pre) pre[e] = u;
      x = gelu_value(to_f32(u));
    }
    if (residual) x += to_f32(residual[e]);
    out[e] = from_f32<T>(x);
  }
}

}  // namespace tg::cuda::gemm_detail
