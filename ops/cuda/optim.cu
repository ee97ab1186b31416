// CUDA optimizer kernels (launchers declared in ops/cuda/optim.h).
//
// The arithmetic is written with explicit round-to-nearest intrinsics (__fmul_rn, __fadd_rn,
// __fmaf_rn, __fdiv_rn, __fsqrt_rn) in the CPU kernels' order, so that nvcc neither contracts a
// multiply and an add into a fused multiply-add where the CPU rounds twice, nor the reverse: the
// GPU's masters, moments and parameters equal the CPU's bit for bit, and the GPU tests compare them
// exactly. Stochastic rounding uses ops/optim_math.h, the same code the CPU runs.
#include "ops/cuda/optim.h"

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "ops/cuda/common.cuh"
#include "ops/optim_math.h"

namespace tg::cuda {
namespace {

constexpr int kThreads = 256;                // kOptimChunk / kThreads = 32 elements per thread per chunk
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // beyond this, blocks loop over chunks
static_assert(kOptimChunk % kThreads == 0, "a chunk is a whole number of block-wide rows");

// ---- the multi-tensor table ----------------------------------------------------------------

// The entry holding chunk `chunk`: the last one whose first_chunk <= chunk. Entries are sorted by
// first_chunk and none is empty (the launcher drops empty tensors), so that entry's chunk range
// contains `chunk`. Every thread of the block searches the same entries, so the loads broadcast.
template <class Entry>
__device__ __forceinline__ const Entry& entry_of_chunk(const Entry* table, int count, int64_t chunk) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (table[mid].first_chunk <= chunk) lo = mid;
    else hi = mid - 1;
  }
  return table[lo];
}

struct UploadedTable {
  int count;       // entries on the device (the non-empty tensors)
  int64_t chunks;  // their chunks
};

// Drops empty tensors, numbers the chunks, and copies the table to `device_table`, in stream order.
// The source is pageable host memory, which the driver stages before cudaMemcpyAsync returns, so
// `entries` may go away right after (the staging may cost a wait, never correctness; the table is
// a few kilobytes).
template <class Entry>
UploadedTable upload_table(const Entry* tensors, int count, void* device_table, const char* op) {
  if (count < 0) throw Error(std::string(op) + ": count is " + std::to_string(count) + ", expected >= 0");
  if (reinterpret_cast<uintptr_t>(device_table) % alignof(Entry) != 0)
    throw Error(std::string(op) + ": the device table is not " + std::to_string(alignof(Entry)) + "-byte aligned");
  std::vector<Entry> entries;
  entries.reserve(static_cast<size_t>(count));
  int64_t chunks = 0;
  for (int i = 0; i < count; i++) {
    if (tensors[i].numel <= 0) continue;
    Entry e = tensors[i];
    e.first_chunk = chunks;
    chunks += optim_chunk_count(e.numel);
    entries.push_back(e);
  }
  if (!entries.empty())
    TG_CUDA_CHECK(cudaMemcpyAsync(device_table, entries.data(), entries.size() * sizeof(Entry), cudaMemcpyHostToDevice,
                                  stream()));
  return {static_cast<int>(entries.size()), chunks};
}

unsigned blocks_for_chunks(int64_t chunks) { return static_cast<unsigned>(chunks < kMaxBlocks ? chunks : kMaxBlocks); }

// ---- element access ------------------------------------------------------------------------

template <class T> __device__ __forceinline__ T stochastic_round(float x, uint64_t random);
template <> __device__ __forceinline__ bf16 stochastic_round<bf16>(float x, uint64_t random) {
  return __ushort_as_bfloat16(optim_math::stochastic_round_bf16(x, random));
}
template <> __device__ __forceinline__ f16 stochastic_round<f16>(float x, uint64_t random) {
  return __ushort_as_half(optim_math::stochastic_round_f16(x, random));
}

// A half element's 16 bits and back (a bf16 param with master_low; the f16 forms compile the same
// kernel and are never reached, the launcher refusing master_low for f16).
template <class T> __device__ __forceinline__ uint16_t half_bits(T x);
template <> __device__ __forceinline__ uint16_t half_bits<bf16>(bf16 x) { return __bfloat16_as_ushort(x); }
template <> __device__ __forceinline__ uint16_t half_bits<f16>(f16 x) { return __half_as_ushort(x); }
template <class T> __device__ __forceinline__ T bits_half(uint16_t bits);
template <> __device__ __forceinline__ bf16 bits_half<bf16>(uint16_t bits) { return __ushort_as_bfloat16(bits); }
template <> __device__ __forceinline__ f16 bits_half<f16>(uint16_t bits) { return __ushort_as_half(bits); }

// ---- AdamW ---------------------------------------------------------------------------------

// table[count] of AdamWTensor; every param and grad is a T. Grid: blocks loop over the chunks of all
// tensors (see ops/cuda/optim.h); block: kThreads threads, thread t of a chunk updates elements
// t, t + kThreads, ... of it (coalesced). Each thread: read the gradient (as f32) and the weight
// (the master, or the f32 param), update the weight, m and v in f32, store them, and for a half
// param store the weight rounded once.
template <class T>
__global__ void __launch_bounds__(kThreads)
    adamw_multi_kernel(const AdamWTensor* __restrict__ table, int count, int64_t total_chunks, AdamWShared s) {
  for (int64_t chunk = blockIdx.x; chunk < total_chunks; chunk += gridDim.x) {
    const AdamWTensor& e = entry_of_chunk(table, count, chunk);
    T* __restrict__ param = static_cast<T*>(e.param);
    const T* __restrict__ grad = static_cast<const T*>(e.grad);
    float* __restrict__ master = e.master;
    uint16_t* __restrict__ master_low = e.master_low;
    float* __restrict__ m = e.m;
    float* __restrict__ v = e.v;
    const float decay = e.decay, neg_step_size = e.neg_step_size, bias_correction2_sqrt = e.bias_correction2_sqrt;
    const uint64_t rounding_key = e.rounding_key;
    const int64_t begin = (chunk - e.first_chunk) * kOptimChunk;
    const int64_t end = e.numel < begin + kOptimChunk ? e.numel : begin + kOptimChunk;
    for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
      const float g = to_f32(grad[i]);
      float w;
      if constexpr (std::is_same<T, float>::value) w = param[i];
      else if (master_low != nullptr) w = optim_math::join_master(half_bits(param[i]), master_low[i]);
      else w = master[i];
      // The CPU kernel's order (ops/cpu/optim.cpp, adamw_block):
      //   w *= decay;  m = fma(g, 1-beta1, m*beta1);  v = v*beta2 + ((1-beta2)*g)*g
      //   w += (neg_step_size*m) / (sqrt(v)/bias_correction2_sqrt + eps)
      w = __fmul_rn(w, decay);
      const float mi = __fmaf_rn(g, s.one_minus_beta1, __fmul_rn(m[i], s.beta1));
      const float vi = __fadd_rn(__fmul_rn(v[i], s.beta2), __fmul_rn(__fmul_rn(s.one_minus_beta2, g), g));
      const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bias_correction2_sqrt), s.eps);
      w = __fadd_rn(w, __fdiv_rn(__fmul_rn(neg_step_size, mi), denom));
      m[i] = mi;
      v[i] = vi;
      if constexpr (std::is_same<T, float>::value) {
        param[i] = w;
      } else if (master_low != nullptr) {
        param[i] = bits_half<T>(optim_math::master_bf16(w));
        master_low[i] = optim_math::master_low_bits(w);
      } else {
        master[i] = w;
        param[i] = s.stochastic_rounding ? stochastic_round<T>(w, optim_math::rounding_bits(rounding_key, i))
                                         : from_f32<T>(w);
      }
    }
  }
}

// ---- SGD -----------------------------------------------------------------------------------

// param, grad, momentum_buf (n) f32. Grid-stride; each thread updates its elements with
// cpu::sgd_update's order of operations.
__global__ void __launch_bounds__(kThreads)
    sgd_kernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ momentum_buf, int64_t n,
               float neg_lr, float momentum, float one_minus_dampening, float weight_decay, bool nesterov,
               bool first_step) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    const float p = param[i];
    float d = grad[i];
    if (weight_decay != 0.0f) d = __fadd_rn(d, __fmul_rn(weight_decay, p));
    if (momentum_buf != nullptr) {
      const float buf =
          first_step ? d : __fadd_rn(__fmul_rn(momentum_buf[i], momentum), __fmul_rn(one_minus_dampening, d));
      momentum_buf[i] = buf;
      d = nesterov ? __fadd_rn(d, __fmul_rn(momentum, buf)) : buf;
    }
    param[i] = __fadd_rn(p, __fmul_rn(neg_lr, d));
  }
}

// ---- gradient passes -----------------------------------------------------------------------

// table[count] of TensorChunks of T -> partials[chunk] = sum of squares of that chunk. Grid: blocks
// loop over chunks; block: kThreads threads, thread t accumulates elements t, t + kThreads, ... (32
// of them) with fused multiply-adds in f32, then block_sum adds the 256 values in a fixed tree.
// The partial's slot is the chunk's number, not the block's, so the result does not depend on the
// grid size.
template <class T>
__global__ void __launch_bounds__(kThreads)
    sum_of_squares_kernel(const TensorChunks* __restrict__ table, int count, int64_t total_chunks,
                          float* __restrict__ partials) {
  __shared__ float scratch[32];
  for (int64_t chunk = blockIdx.x; chunk < total_chunks; chunk += gridDim.x) {
    const TensorChunks& e = entry_of_chunk(table, count, chunk);
    const T* __restrict__ x = static_cast<const T*>(e.data);
    const int64_t begin = (chunk - e.first_chunk) * kOptimChunk;
    const int64_t end = e.numel < begin + kOptimChunk ? e.numel : begin + kOptimChunk;
    float acc = 0.0f;
    for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
      const float value = to_f32(x[i]);
      acc = __fmaf_rn(value, value, acc);
    }
    // The chunk loop is uniform across the block, so every thread reaches block_sum's barriers.
    const float total = block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[chunk] = total;
  }
}

// partials (n) -> *result = their sum in double. One block: thread t adds partials t, t + kThreads,
// ... in order, then a shared-memory tree halves the 256 sums in a fixed pattern.
__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(const float* __restrict__ partials, int64_t n, double* __restrict__ result) {
  __shared__ double sums[kThreads];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) acc += static_cast<double>(partials[i]);
  sums[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half >>= 1) {
    if (static_cast<int>(threadIdx.x) < half) sums[threadIdx.x] += sums[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *result = sums[0];
}

// table[count] of TensorChunks of T: x *= s, rounded once on store. Grid and block as in
// sum_of_squares_kernel; each thread scales its elements and remembers whether a stored value is
// inf or NaN. Any thread that saw one writes 1 to the flag: the same value from every writer, so
// the races between them change nothing (no atomics needed, and the result is deterministic).
template <class T>
__global__ void __launch_bounds__(kThreads)
    multi_scale_kernel(const TensorChunks* __restrict__ table, int count, int64_t total_chunks, float s,
                       int32_t* found_non_finite) {
  bool non_finite = false;
  for (int64_t chunk = blockIdx.x; chunk < total_chunks; chunk += gridDim.x) {
    const TensorChunks& e = entry_of_chunk(table, count, chunk);
    T* __restrict__ x = static_cast<T*>(e.data);
    const int64_t begin = (chunk - e.first_chunk) * kOptimChunk;
    const int64_t end = e.numel < begin + kOptimChunk ? e.numel : begin + kOptimChunk;
    for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
      const T y = from_f32<T>(__fmul_rn(to_f32(x[i]), s));
      x[i] = y;
      non_finite |= !isfinite(to_f32(y));
    }
  }
  if (non_finite && found_non_finite != nullptr) *found_non_finite = 1;
}

}  // namespace

// ---- launchers -----------------------------------------------------------------------------

void adamw_multi_update(DType dtype, const AdamWTensor* tensors, int count, void* device_table,
                        const AdamWShared& shared) {
  const char* op = "adamw_multi_update";
  for (int i = 0; i < count; i++)
  {
    const bool has_master = tensors[i].master != nullptr || tensors[i].master_low != nullptr;
    if ((dtype == DType::F32) == has_master)
      throw Error(std::string(op) + ": tensor " + std::to_string(i) +
                  (dtype == DType::F32 ? " is f32 but has a master" : " is a half tensor without a master"));
    if (tensors[i].master_low != nullptr && (dtype != DType::BF16 || tensors[i].master != nullptr || shared.stochastic_rounding))
      throw Error(std::string(op) + ": tensor " + std::to_string(i) +
                  " has master_low, which only a bf16 param without an f32 master, rounded to nearest, takes");
  }
  const UploadedTable up = upload_table(tensors, count, device_table, op);
  if (up.chunks == 0) return;
  const auto* table = static_cast<const AdamWTensor*>(device_table);
  TG_DISPATCH_FLOAT(dtype, op, T, {
    adamw_multi_kernel<T><<<blocks_for_chunks(up.chunks), kThreads, 0, stream()>>>(table, up.count, up.chunks, shared);
  });
  TG_CUDA_CHECK_LAUNCH("adamw_multi_kernel");
}

void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step) {
  if (n <= 0) return;
  // The scalars exactly as cpu::sgd_update forms them.
  const float neg_lr = static_cast<float>(-static_cast<double>(lr));
  const float one_minus_dampening = static_cast<float>(1.0 - dampening);
  sgd_kernel<<<grid_for(n, kThreads), kThreads, 0, stream()>>>(param, grad, momentum != 0.0f ? momentum_buf : nullptr,
                                                               n, neg_lr, momentum, one_minus_dampening, weight_decay,
                                                               nesterov, first_step);
  TG_CUDA_CHECK_LAUNCH("sgd_kernel");
}

void multi_sum_of_squares(DType dtype, const TensorChunks* tensors, int count, void* device_table, float* partials) {
  const char* op = "multi_sum_of_squares";
  const UploadedTable up = upload_table(tensors, count, device_table, op);
  if (up.chunks == 0) return;
  const auto* table = static_cast<const TensorChunks*>(device_table);
  TG_DISPATCH_FLOAT(dtype, op, T, {
    sum_of_squares_kernel<T><<<blocks_for_chunks(up.chunks), kThreads, 0, stream()>>>(table, up.count, up.chunks,
                                                                                       partials);
  });
  TG_CUDA_CHECK_LAUNCH("sum_of_squares_kernel");
}

double sum_partials(const float* partials, int64_t n, double* result) {
  if (n <= 0) return 0.0;
  sum_partials_kernel<<<1, kThreads, 0, stream()>>>(partials, n, result);
  TG_CUDA_CHECK_LAUNCH("sum_partials_kernel");
  double host = 0.0;
  TG_CUDA_CHECK(cudaMemcpyAsync(&host, result, sizeof host, cudaMemcpyDeviceToHost, stream()));
  TG_CUDA_CHECK(cudaStreamSynchronize(stream()));
  return host;
}

void multi_scale(DType dtype, const TensorChunks* tensors, int count, void* device_table, float s,
                 int32_t* found_non_finite) {
  const char* op = "multi_scale";
  const UploadedTable up = upload_table(tensors, count, device_table, op);
  if (up.chunks == 0) return;
  const auto* table = static_cast<const TensorChunks*>(device_table);
  TG_DISPATCH_FLOAT(dtype, op, T, {
    multi_scale_kernel<T><<<blocks_for_chunks(up.chunks), kThreads, 0, stream()>>>(table, up.count, up.chunks, s,
                                                                                    found_non_finite);
  });
  TG_CUDA_CHECK_LAUNCH("multi_scale_kernel");
}

void clear_flag(int32_t* flag) { TG_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int32_t), stream())); }

int32_t read_flag(const int32_t* flag) {
  int32_t host = 0;
  TG_CUDA_CHECK(cudaMemcpyAsync(&host, flag, sizeof host, cudaMemcpyDeviceToHost, stream()));
  TG_CUDA_CHECK(cudaStreamSynchronize(stream()));
  return host;
}

}  // namespace tg::cuda
