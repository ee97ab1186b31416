// Timing for the GPU benchmarks (bench/bench_gpu_*.cu): the median of repeated runs, each timed by
// its own pair of events on the library's stream, so host overhead between launches is not counted
// and one slow run (a clock ramp, another process) does not move the figure.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "tensor/cuda_check.h"
#include "tensor/device.h"

namespace tg::bench {

// Median milliseconds of `fn` over `repeats` runs, after `warmup` untimed ones.
inline double median_ms(const std::function<void()>& fn, int repeats = 30, int warmup = 5) {
  for (int i = 0; i < warmup; i++) fn();
  cudaEvent_t start, stop;
  TG_CUDA_CHECK(cudaEventCreate(&start));
  TG_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> times;
  for (int i = 0; i < repeats; i++) {
    TG_CUDA_CHECK(cudaEventRecord(start, cuda::stream()));
    fn();
    TG_CUDA_CHECK(cudaEventRecord(stop, cuda::stream()));
    TG_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    TG_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  TG_CUDA_CHECK(cudaEventDestroy(start));
  TG_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace tg::bench
