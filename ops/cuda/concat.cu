// CUDA concatenation: one launch per batch of up to kMaxInputsPerLaunch inputs (blockIdx.y picks
// the input), each thread copying whole units of U, the widest of 16, 8, 4, 2 or 1 bytes that
// every pointer, run and row is a multiple of (so a join of f32 rows of 4k elements moves 16-byte
// vectors, and an odd bf16 column still works, two bytes at a time).
#include "ops/cuda/concat.h"

#include <algorithm>

#include "ops/cuda/common.cuh"

namespace tg::cuda {

namespace {

constexpr int kMaxInputsPerLaunch = 32;  // 32 * 24 bytes of kernel parameters

struct ConcatInput {
  const void* src;
  int64_t run;     // units per row of this input
  int64_t offset;  // where its run starts in a row of the output, in units
};

struct ConcatBatch {
  ConcatInput inputs[kMaxInputsPerLaunch];
};

// inputs[blockIdx.y] (outer, run) -> out (outer, row) at columns [offset, offset + run)
template <class U>
__global__ void concat_kernel(U* out, int64_t row, int64_t outer, ConcatBatch batch) {
  const ConcatInput in = batch.inputs[blockIdx.y];
  const U* src = static_cast<const U*>(in.src);
  const int64_t n = outer * in.run;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
    const int64_t r = k / in.run;
    out[r * row + in.offset + (k - r * in.run)] = src[k];
  }
}

template <class U>
void launch(void* out, const std::vector<const void*>& inputs, const std::vector<int64_t>& run_bytes, int64_t outer) {
  constexpr int64_t kUnit = sizeof(U);
  constexpr int kThreads = 256;
  int64_t row_bytes = 0;
  for (int64_t bytes : run_bytes) row_bytes += bytes;
  ConcatBatch batch{};
  int filled = 0;
  int64_t largest = 0, offset = 0;
  auto flush = [&] {
    if (filled == 0) return;
    dim3 grid(grid_for(largest, kThreads), static_cast<unsigned>(filled));
    concat_kernel<U><<<grid, kThreads, 0, stream()>>>(static_cast<U*>(out), row_bytes / kUnit, outer, batch);
    TG_CUDA_CHECK_LAUNCH("concat_kernel");
    filled = 0;
    largest = 0;
  };
  for (size_t i = 0; i < inputs.size(); i++) {
    if (run_bytes[i] > 0) {  // an empty input has nothing to copy
      batch.inputs[filled++] = {inputs[i], run_bytes[i] / kUnit, offset / kUnit};
      largest = std::max(largest, outer * (run_bytes[i] / kUnit));
      if (filled == kMaxInputsPerLaunch) flush();
    }
    offset += run_bytes[i];
  }
  flush();
}

}  // namespace

void concat_forward(void* out, const std::vector<const void*>& inputs, const std::vector<int64_t>& run_bytes,
                    int64_t outer) {
  if (outer == 0) return;
  // The widest unit that divides every address and run (the offsets and the row are sums of runs).
  uint64_t bits = reinterpret_cast<uintptr_t>(out);
  for (size_t i = 0; i < inputs.size(); i++)
    bits |= reinterpret_cast<uintptr_t>(inputs[i]) | static_cast<uint64_t>(run_bytes[i]);
  if (bits % 16 == 0) launch<uint4>(out, inputs, run_bytes, outer);
  else if (bits % 8 == 0) launch<uint2>(out, inputs, run_bytes, outer);
  else if (bits % 4 == 0) launch<uint32_t>(out, inputs, run_bytes, outer);
  else if (bits % 2 == 0) launch<uint16_t>(out, inputs, run_bytes, outer);
  else launch<uint8_t>(out, inputs, run_bytes, outer);
}

}  // namespace tg::cuda
