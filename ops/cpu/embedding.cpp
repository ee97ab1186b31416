#include "ops/cpu/embedding.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

namespace tg::cpu {
TG_CPU_ISA_BEGIN

static constexpr int64_t kParallelMinElements = 1 << 15;
// Threads split the columns in blocks of 16 floats: whole cache lines when C is a multiple of 16
// (as model widths are), so that no two threads write one line.
static constexpr int64_t kFloatsPerLine = 16;

// The rows are scattered over the table, so the hardware prefetcher cannot see the next one coming
// and every row would start with a full memory latency; fetching the row kPrefetchRows ahead hides
// it (measured on one core at C = 768, V = 50304: forward 15-20% faster, backward a few %).
static constexpr int64_t kPrefetchRows = 2;

static inline void prefetch_row(const float* row, int64_t count, bool for_write) {
  for (int64_t i = 0; i < count; i += kFloatsPerLine) {
    if (for_write) __builtin_prefetch(row + i, 1);
    else __builtin_prefetch(row + i, 0);
  }
}

// ids (N), weight (V,C) -> out (N,C)
void embedding_forward(float* out, const int32_t* ids, const float* weight, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= kParallelMinElements)
  for (int64_t n = 0; n < N; n++) {
    if (n + kPrefetchRows < N) prefetch_row(weight + static_cast<int64_t>(ids[n + kPrefetchRows]) * C, C, false);
    std::memcpy(out + n * C, weight + static_cast<int64_t>(ids[n]) * C, static_cast<size_t>(C) * sizeof(float));
  }
}

// dweight (V,C) += scatter of dout (N,C) by ids (N)
void embedding_backward(float* dweight, const float* dout, const int32_t* ids, int64_t N, int64_t C) {
  // Splitting the rows n across threads would make two threads add into the same dweight row when
  // an id repeats (every batch repeats ids), needing atomics whose order varies run to run. Splitting
  // the columns instead gives each thread its own slice of every dweight row: no races, and each
  // element still sums over n in order. Every thread reads all N ids, which is C times less data
  // than dout.
  const int64_t lines = (C + kFloatsPerLine - 1) / kFloatsPerLine;
#pragma omp parallel if (N * C >= kParallelMinElements)
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t begin = std::min(C, t * lines / threads * kFloatsPerLine);
    const int64_t end = std::min(C, (t + 1) * lines / threads * kFloatsPerLine);
    if (begin < end) {
      for (int64_t n = 0; n < N; n++) {
        if (n + kPrefetchRows < N)
          prefetch_row(dweight + static_cast<int64_t>(ids[n + kPrefetchRows]) * C + begin, end - begin, true);
        float* row = dweight + static_cast<int64_t>(ids[n]) * C;
        const float* d = dout + n * C;
#pragma omp simd
        for (int64_t i = begin; i < end; i++) row[i] += d[i];
      }
    }
  }
}

TG_CPU_ISA_END
}  // namespace tg::cpu
