// Embedding lookup on CUDA: launchers for ops/embedding.cpp. The ids are trusted, as on the CPU:
// the front checks every id against V on the host before calling (ops/embedding.cpp).
//
// The backward is a scatter-add of dout rows into dweight rows by id, deterministic without
// floating-point atomics:
//   1. sort: keys (id << 32 | position) for every position, sorted ascending on the GPU by a
//      bitonic network (integer compare-exchange only). The keys are unique, so the order is
//      unique: the rows of each id end up together, in position order. Shared-memory tiles of
//      kEmbeddingSortTile keys do every step whose partner lies in the same tile; only the longer
//      strides go through global memory (N = 16384: 4 tiles, then 3 global steps and 2 tile merges).
//   2. chunks: the sorted list is cut into chunks of kEmbeddingChunkRows entries, one block each.
//      Each thread of the block owns a few columns and walks the chunk in order, summing dout rows
//      in f32 while the id stays the same. A run of equal ids that lies wholly inside the chunk is
//      added into its dweight row right there (read, add in f32, round once); that row has no other
//      writer. A run that crosses a chunk boundary leaves its piece's sum in a partial row instead
//      (slot 0: the piece that continues a run from the previous chunk; slot 1: the piece that
//      starts a run going on into the next chunk).
//   3. combine: the block of the chunk where a crossing run starts adds that run's pieces in chunk
//      order (its slot 1, then slot 0 of each following chunk it reaches) into its dweight row.
// Every sum thus runs in an order fixed by the ids alone, so the result is bit-identical run to run.
// Work per block is bounded by the chunk size however skewed the ids are (a run of one id over all
// N positions costs N / kEmbeddingChunkRows partial rows summed in step 3).
//
// Every launcher is asynchronous on cuda::stream(); nothing here synchronizes with the host.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

constexpr int64_t kEmbeddingSortTile = 4096;  // 64-bit keys sorted per shared-memory tile (32 KB)
constexpr int64_t kEmbeddingChunkRows = 32;   // sorted entries per block in step 2

// ids (N) i32 in [0, V), weight (V,C) -> out (N,C): out[n] = weight[ids[n]]; weight and out `dtype`.
void embedding_forward(DType dtype, void* out, const int32_t* ids, const void* weight, int64_t N, int64_t C);

// Scratch for embedding_backward at this (N, C): the sort keys (in 64-bit words: N rounded up to a
// power of two) and the partial rows (in floats: 2C per chunk of kEmbeddingChunkRows entries).
int64_t embedding_backward_key_words(int64_t N);
int64_t embedding_backward_partial_floats(int64_t N, int64_t C);

// dout (N,C), ids (N) i32 in [0, V) -> dweight (V,C) += the rows of dout scattered by id; dout and
// dweight `dtype`. keys holds embedding_backward_key_words(N) 64-bit words (8-byte aligned) and
// partials embedding_backward_partial_floats(N, C) floats, both scratch.
void embedding_backward(DType dtype, void* dweight, const void* dout, const int32_t* ids, void* keys, float* partials,
                        int64_t N, int64_t C);

}  // namespace tg::cuda
