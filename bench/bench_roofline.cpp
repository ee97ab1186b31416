// Prints this machine's roofline numbers (fp32 FMA and bf16 dot peaks, copy bandwidth), as every
// other benchmark measures them.
//
//   build/bench/bench_roofline
#include <omp.h>

#include <cstdio>

#include "bench/bench_common.h"

namespace {

int run() {
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

}  // namespace

int main(int argc, char** argv) {
  // No flags: the FlagSet gives --help, and rejects any argument rather than ignoring it.
  tg::FlagSet flags("bench_roofline", "[--help]",
                    "This machine's roofline numbers as every other benchmark measures them: the fp32 FMA peak and\n"
                    "the bf16 dot peak (vdpbf16ps) on one thread and on all OpenMP threads, and the copy bandwidth.");
  return tg::bench::run_main(flags, argc, argv, run);
}
