// Prints this machine's two roofline numbers, as every other benchmark measures them.
#include <omp.h>

#include <cstdio>

#include "bench/bench_common.h"

int main() {
  int threads = omp_get_max_threads();
  std::printf("SIMD: %s, OpenMP threads: %d\n", tg::bench::simd_name().c_str(), threads);
  std::printf("fp32 FMA peak, 1 thread:  %.1f GFLOP/s\n", tg::bench::measured_fma_peak_gflops(1));
  std::printf("fp32 FMA peak, %d threads: %.1f GFLOP/s\n", threads, tg::bench::measured_fma_peak_gflops(threads));
  std::printf("copy bandwidth (read + write, 256 MB buffers): %.1f GB/s\n", tg::bench::measured_copy_bandwidth_gbs());
  return 0;
}
