#include "bench/bench_common.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "ops/cpu/isa.h"
#include "programs/lib/machine_peak.h"
#include "tensor/error.h"
#include "tensor/tensor.h"

namespace tg::bench {

int run_main(FlagSet& flags, int argc, char** argv, const std::function<int()>& body,
             const std::function<void()>& check) {
  try {
    const std::vector<std::string> extra = flags.parse(argc, argv);
    if (flags.help_requested()) {
      std::fputs(flags.help().c_str(), stdout);
      return 0;
    }
    if (!extra.empty())
      throw Error("unexpected argument '" + extra.front() + "'; see " + flags.program() + " --help");
    try {
      if (check) check();
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "; see " + flags.program() + " --help");
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", flags.program().c_str(), e.what());
    return 2;
  }
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", flags.program().c_str(), e.what());
    return 1;
  }
}

Timing time_runs(const std::function<void()>& fn, int repeats, int warmup) {
  for (int i = 0; i < warmup; i++) fn();
  std::vector<double> times;
  for (int i = 0; i < repeats; i++) {
    auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], times[0]};
}

double time_ms(const std::function<void()>& fn, int repeats, int warmup) { return time_runs(fn, repeats, warmup).median_ms; }

std::string simd_name() { return cpu::cpu_isa_name(cpu::cpu_isa()); }

double measured_fma_peak_gflops(int threads) {
  static double cached[256] = {0};
  int n = threads > 0 ? threads : omp_get_max_threads();
  if (n < 256 && cached[n] > 0) return cached[n];
  double peak = cpu_peak_gflops(n, 20000000);
  if (n < 256) cached[n] = peak;
  return peak;
}

double measured_bf16_peak_gflops(int threads) {
  static double cached[256] = {0};
  int n = threads > 0 ? threads : omp_get_max_threads();
  if (n < 256 && cached[n] > 0) return cached[n];
  double peak = cpu_bf16_peak_gflops(n, 20000000);
  if (n < 256) cached[n] = peak;
  return peak;
}

double measured_copy_bandwidth_gbs() {
  static double cached = 0;
  if (cached > 0) return cached;
  const size_t n = size_t(64) << 20;  // 256 MB per buffer: far past any last-level cache here
  Tensor src = Tensor::full({static_cast<int64_t>(n)}, 1.0f), dst = Tensor::zeros({static_cast<int64_t>(n)});
  float* d = dst.data<float>();
  const float* s = src.data<float>();
  double ms = time_ms([&] {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) d[i] = s[i];
  }, 7, 2);
  cached = 2.0 * n * sizeof(float) / (ms * 1e-3) * 1e-9;
  return cached;
}

double best_ms_after_pause(const std::function<void()>& fn) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  double once = time_ms(fn, 1, 1);
  int repeats = std::clamp(static_cast<int>(500.0 / std::max(once, 1e-3)), 3, 200);
  double best = once;
  for (int i = 0; i < repeats; i++) best = std::min(best, time_ms(fn, 1, 0));
  return best;
}

void add_linear_gemms(std::vector<GemmShape>& shapes, const std::string& name, int64_t tokens, int64_t in, int64_t out) {
  shapes.push_back({name + ".fwd", false, true, tokens, out, in, 0.0f});
  shapes.push_back({name + ".dx", false, false, tokens, in, out, 0.0f});
  shapes.push_back({name + ".dW", true, false, out, in, tokens, 1.0f});
}

}  // namespace tg::bench
