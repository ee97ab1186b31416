// A GPU's peak FLOP/s, the denominator of the MFU ./train and the benchmarks print on CUDA.
#pragma once
#include <string>

#include "tensor/device.h"
#include "tensor/dtype.h"

namespace tg {

struct GpuPeak {
  double flops = 0;     // dense FLOP/s for the dtype: tensor cores for bf16/f16, SIMT FMA for f32
  std::string source;   // "datasheet (H100 SXM)" or "SMs x clock x FLOP/clk for sm_XY": how it was found
};

// The dense peak of `device` for `dtype`. H100/H200 SXM and A100 use NVIDIA's datasheet figures
// (989.4 / 66.9 TFLOP/s bf16 / f32 for Hopper, 312 / 19.5 for the A100): the figures MFU is
// customarily quoted against. Other GPUs: SM count x boost clock x the architecture's dense
// FLOP/clk/SM. Zero flops (with the reason in `source`) when there is no GPU or the
// architecture is unknown.
GpuPeak gpu_peak(Device device, DType dtype);

}  // namespace tg
