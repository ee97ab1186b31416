// Embedding kernels (see ops/cuda/embedding.h for the contract and the backward's scheme).
#include "ops/cuda/embedding.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "ops/cuda/common.cuh"
#include "ops/cuda/vec16.cuh"

namespace tg::cuda {
namespace {

using Key = unsigned long long;  // id << 32 | position
constexpr Key kPaddingKey = ~0ull;  // sorts after every real key
constexpr int kSortThreads = 1024;
// Step 2 reads kBatch dout rows (and the dweight rows the batch may finish) before it adds any,
// so that several loads are in flight per thread instead of one dependent load per entry.
constexpr int kBatch = 4;
constexpr int kMaxRowThreads = 256;

__device__ __forceinline__ int64_t key_id(Key key) { return static_cast<int64_t>(key >> 32); }
__device__ __forceinline__ int64_t key_position(Key key) { return static_cast<int64_t>(key & 0xffffffffull); }

// ---- forward ------------------------------------------------------------------------------------

// ids (N), weight (V, words_per_row) -> out (N, words_per_row), rows copied as opaque words (the
// widest of 16, 8, 4, 2 bytes that the row length and both pointers allow). Grid-stride over rows,
// one block per row at a time; thread t copies words t, t + blockDim, ...
template <class Word>
__global__ void embedding_forward_kernel(Word* __restrict__ out, const int32_t* __restrict__ ids,
                                         const Word* __restrict__ weight, int64_t N, int64_t words_per_row) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const Word* src = weight + static_cast<int64_t>(ids[n]) * words_per_row;
    Word* dst = out + n * words_per_row;
    for (int64_t i = threadIdx.x; i < words_per_row; i += blockDim.x) dst[i] = src[i];
  }
}

template <class Word>
void launch_forward(void* out, const int32_t* ids, const void* weight, int64_t N, int64_t row_bytes) {
  const int64_t words = row_bytes / static_cast<int64_t>(sizeof(Word));
  const int threads = static_cast<int>(std::min<int64_t>(kMaxRowThreads, (words + 31) / 32 * 32));
  embedding_forward_kernel<Word><<<grid_for(N, 1), threads, 0, stream()>>>(
      static_cast<Word*>(out), ids, static_cast<const Word*>(weight), N, words);
  TG_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

// ---- backward step 1: bitonic sort of the keys --------------------------------------------------

// One compare-exchange of the bitonic network: pair (i, i + j) of the stage that builds sorted runs
// of length k, ascending where bit k of i is 0 and descending where it is 1.
__device__ __forceinline__ void compare_exchange(Key* keys, int64_t i, int64_t j, int64_t global_i, int64_t k) {
  const Key a = keys[i], b = keys[i + j];
  const bool ascending = (global_i & k) == 0;
  if ((a > b) == ascending) {
    keys[i] = b;
    keys[i + j] = a;
  }
}

// The lower element of pair p at stride j (a power of two): p with a 0 bit inserted at bit j, so
// that its partner is i + j = i ^ j.
__device__ __forceinline__ int64_t pair_low(int64_t p, int64_t j) { return ((p & ~(j - 1)) << 1) | (p & (j - 1)); }

// Every step with stride j < tile of stage k, within each tile of `tile` keys (one block per tile,
// the tile in shared memory). With build = true the block first makes the keys of its tile from
// ids (padding past N) and runs all stages k = 2 .. tile; otherwise it loads the tile and runs the
// steps j = tile/2 .. 1 of the given stage k. Barriers separate the steps; every thread runs them all.
__global__ void __launch_bounds__(kSortThreads)
    embedding_sort_tile_kernel(Key* __restrict__ keys, const int32_t* __restrict__ ids, int64_t N, int64_t tile,
                               int64_t stage, bool build) {
  __shared__ Key s[kEmbeddingSortTile];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * tile;
  for (int64_t i = threadIdx.x; i < tile; i += blockDim.x) {
    const int64_t g = base + i;
    if (build)
      s[i] = g < N ? (static_cast<Key>(static_cast<uint32_t>(ids[g])) << 32) | static_cast<Key>(g) : kPaddingKey;
    else
      s[i] = keys[g];
  }
  const int64_t first_stage = build ? 2 : stage, last_stage = build ? tile : stage;
  for (int64_t k = first_stage; k <= last_stage; k <<= 1) {
    for (int64_t j = (build ? k : tile) >> 1; j > 0; j >>= 1) {
      __syncthreads();
      for (int64_t p = threadIdx.x; p < tile / 2; p += blockDim.x) {
        const int64_t i = pair_low(p, j);
        compare_exchange(s, i, j, base + i, k);
      }
    }
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < tile; i += blockDim.x) keys[base + i] = s[i];
}

// One step (stride j >= tile) of stage k over all n keys in global memory; grid-stride over the n/2 pairs.
__global__ void embedding_sort_global_step_kernel(Key* __restrict__ keys, int64_t n, int64_t j, int64_t k) {
  const int64_t pairs = n / 2;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = pair_low(p, j);
    compare_exchange(keys, i, j, i, k);
  }
}

// keys (n = power of two) from ids (N), sorted ascending.
void sort_keys(Key* keys, const int32_t* ids, int64_t N, int64_t n) {
  const int64_t tile = std::min<int64_t>(kEmbeddingSortTile, n);
  const unsigned tiles = static_cast<unsigned>(n / tile);
  embedding_sort_tile_kernel<<<tiles, kSortThreads, 0, stream()>>>(keys, ids, N, tile, 0, true);
  TG_CUDA_CHECK_LAUNCH("embedding_sort_tile_kernel");
  for (int64_t k = 2 * tile; k <= n; k <<= 1) {
    for (int64_t j = k >> 1; j >= tile; j >>= 1) {
      embedding_sort_global_step_kernel<<<grid_for(n / 2, 256), 256, 0, stream()>>>(keys, n, j, k);
      TG_CUDA_CHECK_LAUNCH("embedding_sort_global_step_kernel");
    }
    embedding_sort_tile_kernel<<<tiles, kSortThreads, 0, stream()>>>(keys, ids, N, tile, k, false);
    TG_CUDA_CHECK_LAUNCH("embedding_sort_tile_kernel");
  }
}

// ---- backward steps 2 and 3: sums over runs of equal ids ----------------------------------------

// keys (N, sorted), dout (N,C) -> dweight (V,C) += whole runs of chunk b; partials (chunks, 2, C) =
// the pieces of runs crossing its boundaries. Block b owns sorted entries [b*R, min(N, (b+1)*R)),
// R = kEmbeddingChunkRows; thread t owns the column vectors t, t + blockDim, ... and walks the
// entries in order with acc = the running sum of the current run's dout rows. No barrier after the
// keys are staged: the threads share no data.
template <class T, int kVec>
__global__ void __launch_bounds__(kMaxRowThreads)
    embedding_backward_chunk_kernel(T* __restrict__ dweight, float* __restrict__ partials, const Key* __restrict__ keys,
                                    const T* __restrict__ dout, int64_t N, int C) {
  __shared__ Key s[kEmbeddingChunkRows];
  const int64_t chunk = blockIdx.x;
  const int64_t begin = chunk * kEmbeddingChunkRows;
  const int count = static_cast<int>(N - begin < kEmbeddingChunkRows ? N - begin : kEmbeddingChunkRows);
  for (int i = threadIdx.x; i < count; i += blockDim.x) s[i] = keys[begin + i];
  __syncthreads();
  // The ids just outside the chunk (-1: none), to tell whether the first/last run crosses out of it.
  const int64_t id_before = begin > 0 ? key_id(keys[begin - 1]) : -1;
  const int64_t id_after = begin + count < N ? key_id(keys[begin + count]) : -1;
  const int nvec = C / kVec;
  for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
    const int c = v * kVec;
    float acc[kVec];
#pragma unroll
    for (int k = 0; k < kVec; k++) acc[k] = 0.0f;
    int run_start = 0;
    for (int i0 = 0; i0 < count; i0 += kBatch) {
      // Loads first: the batch's dout rows, and the dweight row of every entry that ends a run
      // lying wholly inside the chunk (no other block writes those rows in this kernel).
      float rows[kBatch][kVec], targets[kBatch][kVec];
#pragma unroll
      for (int b = 0; b < kBatch; b++) {
        const int i = i0 + b;
        if (i < count) {
          load_f32<T, kVec>(rows[b], dout + key_position(s[i]) * C + c);
          // Loaded for every run ending here; unused when the run turns out to have started in
          // the chunk before (its piece goes to a partial row instead).
          const int64_t id = key_id(s[i]);
          const bool ends_run = i + 1 == count ? id != id_after : key_id(s[i + 1]) != id;
          if (ends_run) load_f32<T, kVec>(targets[b], dweight + id * C + c);
        }
      }
#pragma unroll
      for (int b = 0; b < kBatch; b++) {
        const int i = i0 + b;
        if (i >= count) break;
#pragma unroll
        for (int k = 0; k < kVec; k++) acc[k] += rows[b][k];
        const int64_t id = key_id(s[i]);
        const bool last = i + 1 == count;
        if (!last && key_id(s[i + 1]) == id) continue;  // the run goes on inside the chunk
        const bool crosses_left = run_start == 0 && id == id_before;
        const bool crosses_right = last && id == id_after;
        if (!crosses_left && !crosses_right) {
#pragma unroll
          for (int k = 0; k < kVec; k++) targets[b][k] += acc[k];
          store_f32<T, kVec>(dweight + id * C + c, targets[b]);
        } else {
          float* slot = partials + (chunk * 2 + (crosses_left ? 0 : 1)) * static_cast<int64_t>(C) + c;
#pragma unroll
          for (int k = 0; k < kVec; k++) slot[k] = acc[k];
        }
#pragma unroll
        for (int k = 0; k < kVec; k++) acc[k] = 0.0f;
        run_start = i + 1;
      }
    }
  }
}

// partials (chunks, 2, C), keys (N, sorted) -> dweight (V,C) += each crossing run's pieces, summed in
// chunk order. One block per chunk; it works only when a run starts in its chunk (not continued
// from the one before) and goes on into the next; thread t owns column vectors t, t + blockDim, ...
template <class T, int kVec>
__global__ void __launch_bounds__(kMaxRowThreads)
    embedding_backward_combine_kernel(T* __restrict__ dweight, const float* __restrict__ partials,
                                      const Key* __restrict__ keys, int64_t N, int C) {
  const int64_t chunk = blockIdx.x;
  const int64_t end = std::min<int64_t>(N, (chunk + 1) * kEmbeddingChunkRows);
  if (end >= N) return;  // the last chunk: nothing after it
  const int64_t id = key_id(keys[end - 1]);
  if (key_id(keys[end]) != id) return;  // the last run ends inside this chunk
  const int64_t begin = chunk * kEmbeddingChunkRows;
  // The run containing the chunk's last entry: does it start here? If it reaches back to the first
  // entry and beyond, it started in an earlier chunk, whose block handles it.
  if (key_id(keys[begin]) == id && begin > 0 && key_id(keys[begin - 1]) == id) return;
  // The run ends before the first key with a larger id: binary search in [end, N) (a walk over
  // chunk starts would cost one dependent load per chunk of a long run).
  int64_t lo = end, hi = N;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (key_id(keys[mid]) == id) lo = mid + 1;
    else hi = mid;
  }
  // Its pieces after this chunk's lie in chunks chunk+1 .. last_chunk, each in slot 0.
  const int64_t last_chunk = (lo - 1) / kEmbeddingChunkRows;
  const int nvec = C / kVec;
  for (int v = threadIdx.x; v < nvec; v += blockDim.x) {
    const int c = v * kVec;
    float acc[kVec];
    const float* first = partials + (chunk * 2 + 1) * static_cast<int64_t>(C) + c;
#pragma unroll
    for (int k = 0; k < kVec; k++) acc[k] = first[k];
#pragma unroll 8
    for (int64_t q = chunk + 1; q <= last_chunk; q++) {
      const float* piece = partials + q * 2 * static_cast<int64_t>(C) + c;
#pragma unroll
      for (int k = 0; k < kVec; k++) acc[k] += piece[k];
    }
    float w[kVec];
    load_f32<T, kVec>(w, dweight + id * C + c);
#pragma unroll
    for (int k = 0; k < kVec; k++) w[k] += acc[k];
    store_f32<T, kVec>(dweight + id * C + c, w);
  }
}

template <class T, int kVec>
void launch_backward(T* dweight, const T* dout, const Key* keys, float* partials, int64_t N, int C) {
  const int64_t chunks = (N + kEmbeddingChunkRows - 1) / kEmbeddingChunkRows;
  const int nvec = C / kVec;
  const int threads = std::min(kMaxRowThreads, (nvec + 31) / 32 * 32);
  embedding_backward_chunk_kernel<T, kVec><<<static_cast<unsigned>(chunks), threads, 0, stream()>>>(
      dweight, partials, keys, dout, N, C);
  TG_CUDA_CHECK_LAUNCH("embedding_backward_chunk_kernel");
  embedding_backward_combine_kernel<T, kVec><<<static_cast<unsigned>(chunks), threads, 0, stream()>>>(
      dweight, partials, keys, N, C);
  TG_CUDA_CHECK_LAUNCH("embedding_backward_combine_kernel");
}

int64_t next_power_of_two(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Positions go in the low 32 bits of a key and chunk indices in a grid dimension.
void check_sizes(const char* op, int64_t N, int64_t C) {
  if (N > INT_MAX || C < 1 || C > INT_MAX)
    throw Error(std::string(op) + ": N = " + std::to_string(N) + ", C = " + std::to_string(C) +
                " is outside the CUDA kernels' range (N <= " + std::to_string(INT_MAX) + ", 1 <= C <= " +
                std::to_string(INT_MAX) + ")");
}

}  // namespace

void embedding_forward(DType dtype, void* out, const int32_t* ids, const void* weight, int64_t N, int64_t C) {
  check_sizes("embedding_forward", N, C);
  if (N == 0) return;
  const int64_t row_bytes = C * static_cast<int64_t>(dtype_size(dtype));
  const uintptr_t alignment = reinterpret_cast<uintptr_t>(out) | reinterpret_cast<uintptr_t>(weight) |
                              static_cast<uintptr_t>(row_bytes);
  if (alignment % 16 == 0) launch_forward<uint4>(out, ids, weight, N, row_bytes);
  else if (alignment % 8 == 0) launch_forward<uint2>(out, ids, weight, N, row_bytes);
  else if (alignment % 4 == 0) launch_forward<uint32_t>(out, ids, weight, N, row_bytes);
  else launch_forward<uint16_t>(out, ids, weight, N, row_bytes);  // every float dtype is >= 2 bytes
}

int64_t embedding_backward_key_words(int64_t N) { return N == 0 ? 0 : next_power_of_two(N); }

int64_t embedding_backward_partial_floats(int64_t N, int64_t C) {
  return (N + kEmbeddingChunkRows - 1) / kEmbeddingChunkRows * 2 * C;
}

void embedding_backward(DType dtype, void* dweight, const void* dout, const int32_t* ids, void* keys, float* partials,
                        int64_t N, int64_t C) {
  check_sizes("embedding_backward", N, C);
  if (N == 0) return;
  if (reinterpret_cast<uintptr_t>(keys) % 8 != 0)
    throw Error("embedding_backward: the key scratch is not 8-byte aligned");
  Key* sorted = static_cast<Key*>(keys);
  sort_keys(sorted, ids, N, next_power_of_two(N));
  TG_DISPATCH_FLOAT(dtype, "embedding_backward", T, {
    constexpr int kVec = kVec16<T>;
    auto* dw = static_cast<T*>(dweight);
    auto* dy = static_cast<const T*>(dout);
    if (C % kVec == 0 && aligned16(dweight) && aligned16(dout))
      launch_backward<T, kVec>(dw, dy, sorted, partials, N, static_cast<int>(C));
    else
      launch_backward<T, 1>(dw, dy, sorted, partials, N, static_cast<int>(C));
  });
}

}  // namespace tg::cuda
