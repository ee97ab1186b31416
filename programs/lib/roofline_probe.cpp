#include "programs/lib/roofline_probe.h"

#include <chrono>
#include <cstdio>

#include "ops/cpu/gemm.h"
#include "ops/gemm.h"
#include "programs/lib/gpu_peak.h"
#include "programs/lib/machine_peak.h"
#include "tensor/tensor.h"
#ifdef TG_CUDA
#include <cuda_runtime.h>
#endif

namespace tg {

namespace {

std::string figure(const char* fmt, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), fmt, value);
  return text;
}

// Seconds for `reps` calls of run(), the device drained before and after (item() waits for the
// stream), best of three rounds.
template <class Run>
double best_seconds(const Tensor& drain, int reps, Run run) {
  double best = 1e30;
  for (int round = 0; round < 3; round++) {
    drain.reshape({-1}).narrow(0, 0, 1).item();
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; i++) run();
    drain.reshape({-1}).narrow(0, 0, 1).item();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

#ifdef TG_CUDA
// The DRAM bandwidth the datasheet implies: memory clock x bus width x 2 (double data rate).
double datasheet_bandwidth(Device device) {
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device.index) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device.index) != cudaSuccess)
    return 0;
  return 2.0 * clock_khz * 1e3 * bus_bits / 8.0;
}
#endif

}  // namespace

Roofline measure_roofline(Device device, DType dtype, int threads) {
  Roofline roof;
  if (device.is_cpu()) {
    roof.peak_flops = cpu_peak_gflops(threads, 20000000) * 1e9;
    roof.peak_source = "measured: FMA chains on " + std::to_string(threads) + " threads";
    roof.bandwidth = cpu_copy_bandwidth_gbs(threads) * 1e9;
    roof.bandwidth_source = "measured: copy of 256 MB buffers";
    if (ops::gemm_runs_on_bf16_dot(dtype, device)) {
      roof.bf16_peak_flops = cpu_bf16_peak_gflops(threads, 20000000) * 1e9;
      roof.bf16_peak_source = "measured: vdpbf16ps chains on " + std::to_string(threads) + " threads";
    }
    return roof;
  }
  // A GPU: a 4096^3 GEMM in the run's dtype and a 512 MB copy, each best of three rounds.
  const int64_t n = 4096;
  Tensor a = Tensor::ones({n, n}, dtype, device), b = Tensor::ones({n, n}, dtype, device);
  Tensor c = Tensor::empty({n, n}, dtype, device);
  const double gemm = best_seconds(c, 10, [&] { ops::matmul(c, a, b); });
  roof.peak_flops = 10 * 2.0 * n * n * n / gemm;
  GpuPeak sheet = gpu_peak(device, dtype);
  roof.peak_source = "measured: 4096^3 GEMM; " + sheet.source + " " + figure("%.1f TFLOP/s", sheet.flops / 1e12);
  const int64_t count = int64_t(128) << 20;  // f32 values: 512 MB
  Tensor src = Tensor::ones({count}, DType::F32, device), dst = Tensor::empty({count}, DType::F32, device);
  const double copy = best_seconds(dst, 10, [&] { dst.copy_(src); });
  roof.bandwidth = 10 * 2.0 * static_cast<double>(count) * 4 / copy;
  roof.bandwidth_source = "measured: copy of 512 MB";
#ifdef TG_CUDA
  roof.bandwidth_source += figure("; datasheet %.0f GB/s", datasheet_bandwidth(device) / 1e9);
#endif
  return roof;
}

PlannerMachine planner_machine(Device device, const Roofline& roof) {
  PlannerMachine machine;
  machine.peak_flops = roof.peak_flops;
  machine.bandwidth = roof.bandwidth;
  if (device.is_cpu()) {
    machine.fast_memory_bytes = cpu_l2_bytes_per_core();
    machine.fast_memory = "L2 per core";
    machine.tile_rows = cpu::gemm_mr();  // the active instruction-set level's register tile
    return machine;
  }
  machine.fast_memory = "L2";
  machine.tile_rows = 128;  // the tensor-core GEMM's block rows (kBlockM, ops/cuda/gemm_tensorcore.cu)
#ifdef TG_CUDA
  int l2 = 0;
  if (cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device.index) == cudaSuccess) machine.fast_memory_bytes = l2;
#endif
  return machine;
}

}  // namespace tg
