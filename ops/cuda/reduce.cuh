// Deterministic column sums on the GPU, shared by reduce.cu (a sum over a dimension that is not the
// last) and elementwise.cu (the bias-like db of the rows backward). Device code; include from .cu
// files only.
//
// The terms form an (outer, size, inner) array; the result is, for each (o, c), the sum over k of
// term(o, k, c). No atomics: every sum is added in one fixed order that depends only on the shape,
// never on timing or on the GPU model, so a run repeats bit for bit.
//
// A "body" is a small struct passed by value with
//   __device__ float visit(int64_t o, int64_t k, int64_t c) const;  // the term; may also write (da)
//   __device__ void finish(int64_t o, int64_t c, float total) const; // stores one column's sum
#pragma once
#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "ops/cuda/common.cuh"

namespace tg::cuda {

// A block covers 32 adjacent columns (one warp reads 32 consecutive elements of a row: coalesced)
// and 8 rows at a time (blockDim = (32, 8): warp y walks rows y, y + 8, y + 16, ...).
constexpr int kColumnTile = 32;
constexpr int kColumnLanes = 8;

// How the rows are cut: each (o, 32-column tile) gets `chunks` blocks of `rows_per_chunk` rows.
// One chunk: a single pass writes the results. More: pass 1 writes one f32 partial per (o, chunk,
// column) into scratch, pass 2 adds them in chunk order (in double).
//
// Accuracy: a column's f32 rounding error is at most (rows_per_chunk / 8 + 8) ulps of the sum of
// its |terms| (each thread's sequential adds, then the 8 lanes); capping rows_per_chunk at 1024
// keeps that under 136 ulps for any length, and pass 2 adds ~nothing.
struct ColumnPlan {
  int64_t outer = 1, size = 0, inner = 1;
  int64_t tiles = 1, chunks = 1, rows_per_chunk = 0;
  int64_t scratch_floats() const { return chunks > 1 ? outer * chunks * inner : 0; }
};

inline ColumnPlan plan_columns(int64_t outer, int64_t size, int64_t inner) {
  // About two waves of 256-thread blocks on an H100 (132 SMs x 8 resident). A fixed number rather
  // than the device's SM count, so the cut (and therefore every bit of the result) is the same on
  // any GPU.
  constexpr int64_t kTargetBlocks = 2048;
  // Each thread adds at least 8 rows before the block combines its lanes.
  constexpr int64_t kMinRowsPerChunk = 64;
  constexpr int64_t kMaxRowsPerChunk = 1024;
  constexpr int64_t kMaxChunks = 65535;  // gridDim.y limit
  ColumnPlan plan;
  plan.outer = outer;
  plan.size = size;
  plan.inner = inner;
  plan.tiles = (inner + kColumnTile - 1) / kColumnTile;
  plan.rows_per_chunk = size;
  const int64_t blocks = outer * plan.tiles;
  if (size > kMinRowsPerChunk && blocks > 0) {
    // Enough chunks to fill the GPU (but not so many that a thread adds fewer than 8 rows), and at
    // least enough for the accuracy cap.
    int64_t chunks = blocks < kTargetBlocks ? (kTargetBlocks + blocks - 1) / blocks : 1;
    chunks = std::min(chunks, (size + kMinRowsPerChunk - 1) / kMinRowsPerChunk);
    chunks = std::max(chunks, (size + kMaxRowsPerChunk - 1) / kMaxRowsPerChunk);
    chunks = std::min(chunks, kMaxChunks);
    plan.rows_per_chunk = (size + chunks - 1) / chunks;
    plan.chunks = (size + plan.rows_per_chunk - 1) / plan.rows_per_chunk;  // no empty chunk at the end
  }
  return plan;
}

// Pass 1. Grid (outer * tiles, chunks), block (32, 8). Block (x, y) handles o = x / tiles, columns
// c = (x % tiles) * 32 + threadIdx.x, rows [y * rows_per_chunk, (y + 1) * rows_per_chunk). Thread
// (tx, ty) adds its column's rows ty, ty + 8, ... in order in f32; then the ty == 0 thread adds the
// 8 lane sums in order ty = 0..7 and finishes the column (one chunk) or writes its partial.
template <class Body>
__global__ void __launch_bounds__(kColumnTile * kColumnLanes)
    column_partials_kernel(ColumnPlan plan, float* partials, Body body) {
  __shared__ float lane_sums[kColumnLanes][kColumnTile];
  const int64_t o = blockIdx.x / plan.tiles;
  const int64_t c = (blockIdx.x % plan.tiles) * kColumnTile + threadIdx.x;
  const int64_t k0 = static_cast<int64_t>(blockIdx.y) * plan.rows_per_chunk;
  const int64_t k1 = k0 + plan.rows_per_chunk < plan.size ? k0 + plan.rows_per_chunk : plan.size;
  float acc = 0.0f;
  if (c < plan.inner)
    for (int64_t k = k0 + threadIdx.y; k < k1; k += kColumnLanes) acc += body.visit(o, k, c);
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();  // outside the bounds check: every thread of the block reaches it
  if (threadIdx.y == 0 && c < plan.inner) {
    float total = 0.0f;
#pragma unroll
    for (int lane = 0; lane < kColumnLanes; lane++) total += lane_sums[lane][threadIdx.x];
    if (plan.chunks == 1) body.finish(o, c, total);
    else partials[(o * plan.chunks + blockIdx.y) * plan.inner + c] = total;
  }
}

// Pass 2, only with more than one chunk. Grid-stride over the outer * inner outputs, one thread per
// output j = o * inner + c: adds partials[o, 0..chunks, c] in chunk order, in double (up to 65535
// partials: f32 would add up to that many roundings; this pass reads little, so double is free).
// Consecutive threads read consecutive columns, so every step is one coalesced row of partials.
template <class Body>
__global__ void column_finish_kernel(ColumnPlan plan, const float* partials, Body body) {
  const int64_t outputs = plan.outer * plan.inner;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < outputs; j += stride) {
    const int64_t o = j / plan.inner, c = j - o * plan.inner;
    const float* column = partials + o * plan.chunks * plan.inner + c;
    double total = 0.0;
    for (int64_t chunk = 0; chunk < plan.chunks; chunk++) total += column[chunk * plan.inner];
    body.finish(o, c, static_cast<float>(total));
  }
}

// Both passes on the stream. `partials` holds plan.scratch_floats() f32 (may be null when that is 0).
template <class Body>
void launch_column_sums(const char* op, const ColumnPlan& plan, float* partials, const Body& body) {
  if (plan.outer * plan.inner == 0) return;  // no outputs; an empty `size` still writes zeros
  const int64_t blocks_x = plan.outer * plan.tiles;
  if (blocks_x > INT_MAX)
    throw Error(std::string(op) + ": " + std::to_string(plan.outer) + " x " + std::to_string(plan.inner) +
                " column sums exceed the CUDA grid (at most " + std::to_string(INT_MAX) + " blocks of 32 columns)");
  if (plan.chunks > 1 && partials == nullptr)
    throw Error(std::string(op) + ": the column sums need " + std::to_string(plan.scratch_floats()) +
                " floats of scratch, got none");
  dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(plan.chunks));
  dim3 block(kColumnTile, kColumnLanes);
  column_partials_kernel<Body><<<grid, block, 0, stream()>>>(plan, partials, body);
  TG_CUDA_CHECK_LAUNCH("column_partials_kernel");
  if (plan.chunks == 1) return;
  constexpr int kThreads = 256;
  column_finish_kernel<Body><<<grid_for(plan.outer * plan.inner, kThreads), kThreads, 0, stream()>>>(plan, partials, body);
  TG_CUDA_CHECK_LAUNCH("column_finish_kernel");
}

}  // namespace tg::cuda
