// CUDA sums over one dimension of (outer, size, inner), in one of two ways:
//   inner == 1 (contiguous rows, and the sum of everything): blocks sum chunks of a row, a second
//     pass adds the chunk sums of each row in order;
//   inner > 1 (columns): the column-sum machinery of ops/cuda/reduce.cuh.
// Both are deterministic; see ops/cuda/reduce.h.
#include "ops/cuda/reduce.h"

#include <climits>
#include <string>

#include "ops/cuda/common.cuh"
#include "ops/cuda/elementwise.cuh"
#include "ops/cuda/reduce.cuh"

namespace tg::cuda {

namespace {

// Elements of a row that one block sums: with 256 threads, 8 packs per thread for f32 (4-element
// packs) and 4 for bf16/f16 (8-element packs), enough loads in flight per thread to hide latency. A
// multiple of every pack size, so chunks start on pack boundaries.
constexpr int64_t kRowChunk = 8192;
constexpr int kFinishThreads = 256;

// How rows are cut into chunks, and the block size: 256 threads, fewer (a multiple of 32, at least
// one 8-element pack each) for short rows so that a (16384, 7) sum does not idle 250 threads a row.
// Both depend on the sizes only.
struct RowPlan {
  int64_t outer = 1, size = 0, chunks = 1;
  int threads = 256;
  int64_t scratch_floats() const { return chunks > 1 ? outer * chunks : 0; }
};

RowPlan plan_rows(int64_t outer, int64_t size) {
  RowPlan plan;
  plan.outer = outer;
  plan.size = size;
  plan.chunks = size > kRowChunk ? (size + kRowChunk - 1) / kRowChunk : 1;
  const int64_t packs = (std::min(size, kRowChunk) + 7) / 8;
  plan.threads = static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, (packs + 31) / 32 * 32)));
  return plan;
}

// Grid: outer * chunks blocks; block x sums row o = x / chunks over elements
// [chunk * kRowChunk, min(size, (chunk + 1) * kRowChunk)), chunk = x % chunks. Thread t takes the
// packs starting at chunk_begin + (t + j * blockDim.x) * kSize and adds each pack's elements in
// order, in f32; block_sum then adds the threads' sums in a fixed tree. The vectorized path (row
// starts 16-byte aligned: inp aligned, size a multiple of kSize) and the element path read the same
// numbers in the same order; past the chunk end the element path adds +0, which changes nothing.
// One chunk: thread 0 stores scale * sum; more: the raw chunk sum goes to partials[o * chunks + chunk].
template <class T>
__global__ void row_sum_kernel(const T* inp, int64_t size, int64_t chunks, float scale, bool vectorized, T* out,
                               float* partials) {
  constexpr int kSize = kVec16<T>;
  __shared__ float scratch[32];
  const int64_t o = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const T* row = inp + o * size;
  const int64_t begin = chunk * kRowChunk;
  const int64_t end = begin + kRowChunk < size ? begin + kRowChunk : size;
  float acc = 0.0f;
  for (int64_t p = begin + static_cast<int64_t>(threadIdx.x) * kSize; p < end; p += static_cast<int64_t>(blockDim.x) * kSize) {
    float x[kSize];
    if (vectorized) {
      load_f32(x, row + p);
    } else {
#pragma unroll
      for (int k = 0; k < kSize; k++) x[k] = p + k < end ? to_f32(row[p + k]) : 0.0f;
    }
#pragma unroll
    for (int k = 0; k < kSize; k++) acc += x[k];
  }
  const float total = block_sum(acc, scratch);  // every thread of the block calls it
  if (threadIdx.x != 0) return;
  if (chunks == 1) out[o] = from_f32<T>(scale * total);
  else partials[o * chunks + chunk] = total;
}

// Pass 2 with more than one chunk. One block per row: thread t adds partials t, t + 256, ... of the
// row in order, in double (a row of 10^9 elements has 122k partials: 477 per thread), block_sum
// adds the threads' sums in a fixed tree, thread 0 stores scale * sum. So a row sum carries at most
// 32 + 8 (the chunk) + 1 + 8 (here) f32 roundings, whatever its length.
template <class T>
__global__ void row_finish_kernel(const float* partials, int64_t chunks, float scale, T* out) {
  __shared__ float scratch[32];
  const float* row = partials + static_cast<int64_t>(blockIdx.x) * chunks;
  double acc = 0.0;
  for (int64_t j = threadIdx.x; j < chunks; j += blockDim.x) acc += row[j];
  const float total = block_sum(static_cast<float>(acc), scratch);
  if (threadIdx.x == 0) out[blockIdx.x] = from_f32<T>(scale * total);
}

// out[o, c] = scale * sum over k of inp[o, k, c], for ops/cuda/reduce.cuh.
template <class T>
struct SumColumnsBody {
  T* out;
  const T* inp;
  int64_t size, inner;
  float scale;
  __device__ float visit(int64_t o, int64_t k, int64_t c) const { return to_f32(inp[(o * size + k) * inner + c]); }
  __device__ void finish(int64_t o, int64_t c, float total) const { out[o * inner + c] = from_f32<T>(scale * total); }
};

// dinp (outer, size, inner) += scale * dout[o, c] for the element at (o, k, c). The pack's first
// element is located with two divisions, the rest by stepping c (and o at the end of a block of
// size * inner elements).
template <class T>
struct SumBackwardBody {
  T* dinp;
  const T* dout;
  int64_t size, inner;
  float scale;
  template <int W>
  __device__ void run(int64_t i) const {
    const int64_t block = size * inner;
    int64_t o = i / block, within = i - o * block, c = within % inner;
    float g[W];
#pragma unroll
    for (int k = 0; k < W; k++) {
      g[k] = scale * to_f32(dout[o * inner + c]);
      if (++c == inner) c = 0;
      if (++within == block) {
        within = 0;
        o++;
      }
    }
    add_f32<W>(dinp + i, g);
  }
};

}  // namespace

int64_t sum_scratch_floats(int64_t outer, int64_t size, int64_t inner) {
  return inner == 1 ? plan_rows(outer, size).scratch_floats() : plan_columns(outer, size, inner).scratch_floats();
}

void sum_forward(DType dtype, void* out, const void* inp, int64_t outer, int64_t size, int64_t inner, float scale,
                 float* scratch) {
  const char* op = "sum";
  if (outer * inner == 0) return;
  if (inner > 1) {
    TG_DISPATCH_FLOAT(dtype, op, T, {
      launch_column_sums(op, plan_columns(outer, size, inner), scratch,
                         SumColumnsBody<T>{static_cast<T*>(out), static_cast<const T*>(inp), size, inner, scale});
    });
    return;
  }
  const RowPlan plan = plan_rows(outer, size);
  if (outer * plan.chunks > INT_MAX || outer > INT_MAX)
    throw Error(std::string(op) + ": " + std::to_string(outer) + " rows of " + std::to_string(size) +
                " exceed the CUDA grid (at most " + std::to_string(INT_MAX) + " blocks)");
  if (plan.chunks > 1 && scratch == nullptr)
    throw Error(std::string(op) + ": the row sums need " + std::to_string(plan.scratch_floats()) +
                " floats of scratch, got none");
  TG_DISPATCH_FLOAT(dtype, op, T, {
    const bool vectorized = aligned16(inp) && size % kVec16<T> == 0;
    row_sum_kernel<T><<<static_cast<unsigned>(outer * plan.chunks), plan.threads, 0, stream()>>>(
        static_cast<const T*>(inp), size, plan.chunks, scale, vectorized, static_cast<T*>(out), scratch);
    TG_CUDA_CHECK_LAUNCH("row_sum_kernel");
    if (plan.chunks > 1) {
      row_finish_kernel<T><<<static_cast<unsigned>(outer), kFinishThreads, 0, stream()>>>(scratch, plan.chunks, scale,
                                                                                         static_cast<T*>(out));
      TG_CUDA_CHECK_LAUNCH("row_finish_kernel");
    }
  });
}

void sum_backward(DType dtype, void* dinp, const void* dout, int64_t outer, int64_t size, int64_t inner, float scale) {
  const int64_t n = outer * size * inner;
  TG_DISPATCH_FLOAT(dtype, "sum_backward", T, {
    // A pack reads dout element by element, so only dinp's alignment matters.
    launch_pack_loop<T>("sum_backward", n, aligned16(dinp),
                        SumBackwardBody<T>{static_cast<T*>(dinp), static_cast<const T*>(dout), size, inner, scale});
  });
}

}  // namespace tg::cuda
