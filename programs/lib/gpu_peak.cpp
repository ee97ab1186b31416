#include "programs/lib/gpu_peak.h"

#ifdef TG_CUDA
#include <cuda_runtime.h>
#endif

namespace tg {

#ifndef TG_CUDA
GpuPeak gpu_peak(Device, DType) { return {0, no_cuda_message()}; }
#else
GpuPeak gpu_peak(Device device, DType dtype) {
  if (!device.is_cuda() || !cuda_available()) return {0, "no CUDA GPU"};
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device.index) != cudaSuccess) return {0, "cudaGetDeviceProperties failed"};
  const bool half = dtype == DType::BF16 || dtype == DType::F16;
  const std::string name = prop.name;
  const int arch = prop.major * 10 + prop.minor;
  // Datasheet figures for the data-centre parts (dense, no sparsity). The SXM parts have 132 SMs;
  // the PCIe H100 (114 SMs) falls through to the formula.
  if (arch == 90 && prop.multiProcessorCount == 132)
    return {half ? 989.4e12 : 66.9e12, "datasheet (" + name + ")"};
  if (arch == 80 && prop.multiProcessorCount == 108)
    return {half ? 312e12 : 19.5e12, "datasheet (" + name + ")"};
  // Dense FLOP/clk/SM: f32 is 2 x the FP32 lanes; bf16/f16 tensor cores by generation.
  double per_clock = 0;
  switch (arch) {
    case 80: per_clock = half ? 2048 : 128; break;
    case 86: case 87: per_clock = half ? 1024 : 256; break;
    case 89: per_clock = half ? 1024 : 256; break;
    case 90: per_clock = half ? 4096 : 256; break;
    default: return {0, "unknown architecture sm_" + std::to_string(arch)};
  }
  int clock_khz = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device.index) != cudaSuccess || clock_khz <= 0)
    return {0, "clock rate unavailable"};
  return {per_clock * prop.multiProcessorCount * clock_khz * 1e3,
          "SMs x clock x FLOP/clk for sm_" + std::to_string(arch)};
}
#endif

}  // namespace tg
