#include "programs/lib/machine_peak.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "ops/cpu/fma_peak.h"
#include "ops/cpu/gemm_bf16.h"

namespace tg {

// The best of three timed runs of `flops_of(iterations)` on every thread at once, in GFLOP/s.
template <typename Fn>
static double best_gflops(int threads, long iterations, Fn flops_of) {
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    double flops = 0;
    auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
    flops += flops_of(iterations);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 0 && flops / seconds > best) best = flops / seconds;
  }
  return best / 1e9;
}

double cpu_peak_gflops(int threads, long iterations) { return best_gflops(threads, iterations, [](long n) { return cpu::fma_chains(n); }); }

double cpu_bf16_peak_gflops(int threads, long iterations) {
  if (!cpu::cpu_has_avx512_bf16()) return 0;
  return best_gflops(threads, iterations, bf16_dot_flops_avx512bf16);
}

double cpu_copy_bandwidth_gbs(int threads, size_t buffer_bytes) {
  const size_t n = std::max<size_t>(buffer_bytes / sizeof(float), 1);
  std::unique_ptr<float[]> src(new float[n]), dst(new float[n]);
  float* d = dst.get();
  const float* s = src.get();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; i++) src[i] = 1.0f, d[i] = 0.0f;  // first touch, by the threads that copy
  double best = 0;
  for (int rep = 0; rep < 6; rep++) {
    auto start = std::chrono::steady_clock::now();
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) d[i] = s[i];
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (rep > 0 && seconds > 0) best = std::max(best, 2.0 * static_cast<double>(n * sizeof(float)) / seconds);
  }
  volatile float keep = d[n / 2];  // the copy must happen
  (void)keep;
  return best / 1e9;
}

namespace {

std::string read_line(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  return line;
}

// "0-1,4" -> 3 CPUs.
int count_cpus(const std::string& list) {
  int count = 0;
  std::stringstream ranges(list);
  std::string range;
  while (std::getline(ranges, range, ',')) {
    size_t dash = range.find('-');
    try {
      count += dash == std::string::npos ? 1 : std::stoi(range.substr(dash + 1)) - std::stoi(range.substr(0, dash)) + 1;
    } catch (const std::exception&) {
      return 0;
    }
  }
  return count;
}

}  // namespace

int64_t cpu_l2_bytes_per_core() {
  const std::string cpu = "/sys/devices/system/cpu/cpu0/";
  const int siblings = std::max(1, count_cpus(read_line(cpu + "topology/thread_siblings_list")));
  for (int index = 0; index < 8; index++) {
    const std::string dir = cpu + "cache/index" + std::to_string(index) + "/";
    if (read_line(dir + "level") != "2") continue;
    std::string size = read_line(dir + "size");  // "1024K"
    if (size.empty()) return 0;
    int64_t bytes = 0;
    try {
      bytes = std::stoll(size);
    } catch (const std::exception&) {
      return 0;
    }
    const char unit = size.back();
    if (unit == 'K') bytes <<= 10;
    else if (unit == 'M') bytes <<= 20;
    // An L2 shared by several cores (some Intel E-core clusters) is split between them.
    const int sharing = count_cpus(read_line(dir + "shared_cpu_list"));
    const int cores = std::max(1, sharing / siblings);
    return bytes / cores;
  }
  return 0;
}

}  // namespace tg
