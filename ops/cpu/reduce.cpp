#include "ops/cpu/reduce.h"

#include <omp.h>

#include <algorithm>
#include <vector>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// See ops/cpu/elementwise.cpp: below this many elements one thread is faster.
static constexpr int64_t kParallelMin = 1 << 15;
// Floats summed in float before the block's total joins a double: with 16 SIMD lanes each lane adds
// 256 numbers, so the float rounding stays near 256 * 2^-24 relative of the block (and far less
// for random signs), while the double sum of blocks adds nothing visible.
static constexpr int64_t kBlock = 4096;
// Columns handled by one task in the strided (inner > 1) case: its accumulators stay in L1.
static constexpr int64_t kColumnChunk = 1024;

static double block_sum(const float* x, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}

// Sum of a contiguous run, on one thread.
static double run_sum(const float* x, int64_t n) {
  double total = 0.0;
  for (int64_t start = 0; start < n; start += kBlock) total += block_sum(x + start, std::min(kBlock, n - start));
  return total;
}

// Sum of one long contiguous run across all threads. Block totals go to their own slots and are
// added in a fixed order, so the result does not depend on the number of threads.
static double parallel_run_sum(const float* x, int64_t n) {
  int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> totals(blocks);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; b++) totals[b] = block_sum(x + b * kBlock, std::min(kBlock, n - b * kBlock));
  double total = 0.0;
  for (double t : totals) total += t;
  return total;
}

// acc[0, len) += the column sums of `count` rows of `len` floats, `row_stride` apart, using `block`
// (len floats) as scratch. Rows are added in float over blocks of kBlockRows (a float add is a
// third of the work of widening every element to double, which made this loop compute-bound) and
// each block's sums are added into double.
static void add_column_sums(double* acc, const float* rows, int64_t row_stride, int64_t count, int64_t len, float* b) {
  constexpr int64_t kBlockRows = 64;
  for (int64_t k0 = 0; k0 < count; k0 += kBlockRows) {
    int64_t k1 = std::min(count, k0 + kBlockRows);
    std::fill(b, b + len, 0.0f);
    for (int64_t k = k0; k < k1; k++) {
      const float* row = rows + k * row_stride;
#pragma omp simd
      for (int64_t i = 0; i < len; i++) b[i] += row[i];
    }
#pragma omp simd
    for (int64_t i = 0; i < len; i++) acc[i] += b[i];
  }
}

void sum_forward(float* out, const float* inp, int64_t outer, int64_t size, int64_t inner, float scale) {
  int64_t n = outer * size * inner;
  if (inner == 1) {
    // Each output is the sum of a contiguous row: split rows across threads when there are enough
    // of them, otherwise split each row.
    if (outer >= omp_get_max_threads() || n < kParallelMin) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
      for (int64_t o = 0; o < outer; o++) out[o] = static_cast<float>(scale * run_sum(inp + o * size, size));
    } else {
      for (int64_t o = 0; o < outer; o++) out[o] = static_cast<float>(scale * parallel_run_sum(inp + o * size, size));
    }
    return;
  }
  // Columns: out[o, i] = sum_k inp[o, k, i].
  int64_t chunks = (inner + kColumnChunk - 1) / kColumnChunk;
  int threads = omp_get_max_threads();
  if (outer * chunks < threads && n >= kParallelMin) {
    // Too few output chunks to share out (a bias gradient: one row of C outputs over many rows):
    // split the rows instead. Each thread sums its share into its own partials, and the partials
    // are combined in thread order.
    int64_t outputs = outer * inner;
    std::vector<double> partials(static_cast<size_t>(threads) * outputs, 0.0);
#pragma omp parallel
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      double* mine = partials.data() + static_cast<size_t>(t) * outputs;
      int64_t k0 = size * t / nt, k1 = size * (t + 1) / nt;
      std::vector<float> block(inner);
      for (int64_t o = 0; o < outer; o++)
        add_column_sums(mine + o * inner, inp + (o * size + k0) * inner, inner, k1 - k0, inner, block.data());
    }
    for (int64_t j = 0; j < outputs; j++) {
      double total = 0.0;
      for (int t = 0; t < threads; t++) total += partials[static_cast<size_t>(t) * outputs + j];
      out[j] = static_cast<float>(scale * total);
    }
    return;
  }
  // Otherwise every task owns a chunk of one output row, walking the input rows in order so that
  // the reads stay sequential.
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t task = 0; task < outer * chunks; task++) {
    int64_t o = task / chunks, i0 = (task % chunks) * kColumnChunk, len = std::min(kColumnChunk, inner - i0);
    double acc[kColumnChunk];
    float block[kColumnChunk];
    std::fill(acc, acc + len, 0.0);
    add_column_sums(acc, inp + o * size * inner + i0, inner, size, len, block);
    float* dst = out + o * inner + i0;
    for (int64_t i = 0; i < len; i++) dst[i] = static_cast<float>(scale * acc[i]);
  }
}

void sum_backward(float* dinp, const float* dout, int64_t outer, int64_t size, int64_t inner, float scale) {
  int64_t n = outer * size * inner;
  if (inner == 1 && outer == 1) {  // the sum of everything: one value added to every element
    float g = scale * dout[0];
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
    for (int64_t k = 0; k < size; k++) dinp[k] += g;
    return;
  }
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t o = 0; o < outer; o++) {
      float g = scale * dout[o];
      float* row = dinp + o * size;
#pragma omp simd
      for (int64_t k = 0; k < size; k++) row[k] += g;
    }
    return;
  }
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t row_index = 0; row_index < outer * size; row_index++) {
    const float* g = dout + (row_index / size) * inner;
    float* row = dinp + row_index * inner;
#pragma omp simd
    for (int64_t i = 0; i < inner; i++) row[i] += scale * g[i];
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
