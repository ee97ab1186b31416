// Causal self-attention on the GPU, forward and backward, at the PyTorch SDPA peer's shapes
// (bench/torch/torch_kernels.py prints "sdpa causal bf16 B.. H.. T.. D..: fwd N TFLOP/s,
// bwd M TFLOP/s" on the same machine), plus the char model's shape in f32 (the SIMT path that
// --dtype fp32 trains on).
//
// FLOPs as the peer counts them: the causal half of the score matrix, forward 4*B*NH*T*T*HS/2
// (S = QK^T and O = PV), backward 2.5x the forward (5 such products; ours does 7, since dQ
// recomputes S and dP to stay deterministic, but the figure counts the useful work). Times are
// medians over at least 20 runs timed with cudaEvents on the library's stream, after warm-up;
// the backward includes D = rowsum(dout * out) and adds into dqkv as training does.
//
//   bench_gpu_attention          one line per figure
//   bench_gpu_attention --csv    dtype,pass,B,NH,T,HS,median_ms,tflops
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "bench/bench_common.h"
#include "bench/gpu_timing.h"
#include "ops/attention.h"
#include "tensor/cuda_check.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace {

using namespace tg;
using tg::bench::median_ms;

struct Shape4 {
  int64_t B, NH, T, HS;
  DType dtype;
};

int run(bool csv) {
  if (!cuda_available()) {
    std::printf("bench_gpu_attention: skipped, no CUDA GPU (%s)\n", cuda_status().c_str());
    return 0;
  }
  cudaDeviceProp prop;
  TG_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  if (csv) std::printf("dtype,pass,B,NH,T,HS,median_ms,tflops\n");
  else std::printf("causal self-attention on %s (median of 30 runs, causal FLOPs as the SDPA peer counts them)\n",
                   prop.name);

  const Device device = Device::cuda(0);
  Generator gen(0);
  for (const Shape4& s : {Shape4{16, 12, 1024, 64, DType::BF16}, Shape4{8, 16, 4096, 128, DType::BF16},
                          Shape4{64, 6, 256, 64, DType::BF16}, Shape4{64, 6, 256, 64, DType::F32}}) {
    const int64_t C = s.NH * s.HS;
    Tensor qkv = Tensor::randn({s.B, s.T, 3 * C}, &gen).to(s.dtype).to(device);
    Tensor dout = Tensor::randn({s.B, s.T, C}, &gen).to(s.dtype).to(device);
    Tensor out = Tensor::empty({s.B, s.T, C}, s.dtype, device);
    Tensor lse = Tensor::empty({s.B, s.NH, s.T}, DType::F32, device);
    Tensor dqkv = Tensor::zeros(qkv.shape(), s.dtype, device);
    const double forward_flops = 4.0 * s.B * s.NH * s.T * s.T * s.HS / 2, backward_flops = 2.5 * forward_flops;
    const double forward_ms = median_ms([&] { ops::attention_forward(out, lse, qkv, s.NH); });
    const double backward_ms = median_ms([&] { ops::attention_backward(dqkv, dout, qkv, out, lse, s.NH); });
    const struct {
      const char* pass;
      double ms, flops;
    } figures[] = {{"fwd", forward_ms, forward_flops}, {"bwd", backward_ms, backward_flops}};
    for (const auto& f : figures) {
      const double tflops = f.flops / (f.ms * 1e9);
      if (csv)
        std::printf("%s,%s,%ld,%ld,%ld,%ld,%.4f,%.1f\n", dtype_name(s.dtype), f.pass, static_cast<long>(s.B),
                    static_cast<long>(s.NH), static_cast<long>(s.T), static_cast<long>(s.HS), f.ms, tflops);
      else
        std::printf("attention causal %s B%ld H%ld T%ld D%ld: %s %.3f ms, %.1f TFLOP/s\n", dtype_name(s.dtype),
                    static_cast<long>(s.B), static_cast<long>(s.NH), static_cast<long>(s.T), static_cast<long>(s.HS),
                    f.pass, f.ms, tflops);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool csv = false;
  tg::FlagSet flags("bench_gpu_attention", "[--csv]",
                    "Causal self-attention on the GPU, forward and backward, in TFLOP/s as the PyTorch SDPA peer\n"
                    "counts them (bench/torch/torch_kernels.py), at its bf16 shapes and the char model's in f32.");
  flags.add_switch("csv", &csv, "dtype,pass,B,NH,T,HS,median_ms,tflops");
  return tg::bench::run_main(flags, argc, argv, [&] { return run(csv); });
}
