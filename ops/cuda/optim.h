// CUDA optimizer launchers: a multi-tensor fused AdamW with f32 master weights (or a bf16 param's
// low bits), SGD, and the
// multi-tensor passes behind gradient clipping and loss scaling. Plain C++ (no CUDA types).
//
// Multi-tensor kernels take a table of tensors: every tensor is cut into chunks of kOptimChunk
// elements, the chunks of all tensors are numbered one after another, and block b handles chunks
// b, b + gridDim.x, ... (finding its tensor by a binary search over the table's first-chunk
// numbers). So one launch serves a whole model however many tensors it has, and small tensors do
// not each pay a launch. The launcher numbers the chunks and uploads the table into `device_table`
// (device scratch of at least count * sizeof(entry) bytes, 8-byte aligned) with cudaMemcpyAsync
// from host memory, in stream order (a few kilobytes per step; no result is read back).
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

constexpr int64_t kOptimChunk = 8192;  // elements per chunk: 256 threads x 32 elements
inline int64_t optim_chunk_count(int64_t numel) { return (numel + kOptimChunk - 1) / kOptimChunk; }

// ---- AdamW ---------------------------------------------------------------------------------

// One parameter's row of the AdamW table.
struct AdamWTensor {
  void* param;          // (numel) of the launch's dtype
  const void* grad;     // (numel) of the launch's dtype
  float* master;        // (numel) f32 master weights; null when the dtype is f32 (param is its own
                        // master) or with master_low
  uint16_t* master_low;  // (numel) or, for a bf16 param rounded to nearest, the master's low bits beside
                         // the param (optim_math::join_master); null otherwise
  float* m;             // (numel) f32
  float* v;             // (numel) f32
  int64_t numel;
  int64_t first_chunk;  // set by the launcher
  float decay, neg_step_size, bias_correction2_sqrt;  // optim_math::adamw_factors for this param's step
  uint32_t unused = 0;
  uint64_t rounding_key;  // optim_math::rounding_key(seed, step, index); read with stochastic rounding
};

// What every parameter of one AdamW step shares.
struct AdamWShared {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
  int32_t stochastic_rounding;  // bf16/f16 params: round the master stochastically instead of to nearest
};

// tensors[count]: param, grad (numel) of `dtype` (f32, bf16 or f16); master, m, v (numel) f32, or
// for bf16 master_low (numel) 16-bit instead of master (never with stochastic rounding).
// The same arithmetic as cpu::adamw_update / adamw_update_half, op for op, so the results are
// bitwise equal to the CPU kernel's.
void adamw_multi_update(DType dtype, const AdamWTensor* tensors, int count, void* device_table,
                        const AdamWShared& shared);

// ---- SGD -----------------------------------------------------------------------------------

// param, grad, momentum_buf (n) f32 (momentum_buf null when momentum == 0): cpu::sgd_update's
// arithmetic, op for op.
void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step);

// ---- gradient passes -----------------------------------------------------------------------

// One tensor of a multi-tensor pass.
struct TensorChunks {
  void* data;           // (numel) of the launch's dtype
  int64_t numel;
  int64_t first_chunk;  // set by the launcher
};

// tensors[count] (numel each) of `dtype` -> partials (sum over the list of optim_chunk_count(numel))
// f32: partials[c] is the sum of squares of chunk c, computed in f32 in a fixed order.
void multi_sum_of_squares(DType dtype, const TensorChunks* tensors, int count, void* device_table, float* partials);

// partials (n) f32 -> their sum, added in double in index order by one block. Waits for the GPU:
// the result comes back to the host. `result` is device scratch for one double.
double sum_partials(const float* partials, int64_t n, double* result);

// tensors[count] (numel each) of `dtype`: x *= s, rounded once on store. When `found_non_finite`
// (device, one i32) is not null, sets it to 1 if any stored result is inf or NaN (never clears it).
void multi_scale(DType dtype, const TensorChunks* tensors, int count, void* device_table, float s,
                 int32_t* found_non_finite);

// *flag = 0 on the stream (asynchronous).
void clear_flag(int32_t* flag);
// The value of the device i32 *flag. Waits for the GPU: the result comes back to the host.
int32_t read_flag(const int32_t* flag);

}  // namespace tg::cuda
