#include "programs/lib/machine_peak.h"

#include <omp.h>

#include <chrono>

#include "ops/cpu/fma_peak.h"

namespace tg {

double cpu_peak_gflops(int threads, long iterations) {
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    double flops = 0;
    auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += cpu::fma_chains(iterations);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 0 && flops / seconds > best) best = flops / seconds;
  }
  return best / 1e9;
}

}  // namespace tg
