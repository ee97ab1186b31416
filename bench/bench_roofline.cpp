// Prints this machine's roofline numbers (fp32 FMA and bf16 dot peaks, copy bandwidth), as every
// other benchmark measures them.
#include <omp.h>

#include <cstdio>

#include "bench/bench_common.h"

int main() {
  int threads = omp_get_max_threads();
  std::printf("SIMD: %s, OpenMP threads: %d\n", tg::bench::simd_name().c_str(), threads);
  std::printf("fp32 FMA peak, 1 thread:  %.1f GFLOP/s\n", tg::bench::measured_fma_peak_gflops(1));
  std::printf("fp32 FMA peak, %d threads: %.1f GFLOP/s\n", threads, tg::bench::measured_fma_peak_gflops(threads));
  if (tg::bench::measured_bf16_peak_gflops(1) > 0) {
    std::printf("bf16 dot peak (vdpbf16ps), 1 thread:  %.1f GFLOP/s\n", tg::bench::measured_bf16_peak_gflops(1));
    std::printf("bf16 dot peak (vdpbf16ps), %d threads: %.1f GFLOP/s\n", threads,
                tg::bench::measured_bf16_peak_gflops(threads));
  } else {
    std::printf("bf16 dot peak: this CPU has no AVX512_BF16 (bf16 GEMMs run through f32)\n");
  }
  std::printf("copy bandwidth (read + write, 256 MB buffers): %.1f GB/s\n", tg::bench::measured_copy_bandwidth_gbs());
  return 0;
}
