// conv2d on the GPU per layer of cnn-ref and resnet (nn/cnn.cpp, 1x28x28 input), NHWC, batch 256:
// forward, input gradient (dgrad) and weight gradient (wgrad) in TFLOP/s, in f32 (the SIMT kernel)
// and bf16 (tensor cores). The peer is cuDNN through PyTorch, channels_last, at the same shapes:
// bench/torch/torch_conv.py prints the same lines ("conv bf16 <layer>: fwd X, dgrad Y, wgrad Z
// TFLOP/s") on the same machine.
//
// FLOPs 2 N P Q K (C/groups) R S per pass (ops/conv2d.cpp's count). Times are medians over 30 runs
// timed with cudaEvents on the library's stream, after 5 warm-up runs; dgrad and wgrad add into
// their gradients as training does (wgrad includes its split-K reduction, without dbias).
//
//   bench_gpu_conv          one line per layer and dtype
//   bench_gpu_conv --csv    dtype,layer,N,H,W,C,K,R,S,stride,pass,median_ms,tflops
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "bench/conv_layers.h"
#include "bench/gpu_timing.h"
#include "ops/conv2d.h"
#include "tensor/cuda_check.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace {

using namespace tg;
using tg::bench::median_ms;

using Layer = tg::bench::ConvLayer;

// bench/bench_conv.cpp's layers (and bench/torch/torch_conv.py's), at batch 256.
std::vector<Layer> layers() { return tg::bench::conv_layers(256); }

int run(bool csv) {
  if (!cuda_available()) {
    std::fprintf(stderr, "bench_gpu_conv: no CUDA GPU (%s)\n", cuda_status().c_str());
    return 1;
  }
  if (csv) std::printf("dtype,layer,N,H,W,C,K,R,S,stride,pass,median_ms,tflops\n");
  const Device gpu = Device::cuda(0);
  Generator gen(1);
  for (DType dtype : {DType::BF16, DType::F32})
    for (const Layer& l : layers()) {
      Conv2dParams p;
      p.stride_h = p.stride_w = l.stride;
      p.pad_h = p.pad_w = l.pad;
      Tensor x = Tensor::randn({l.N, l.H, l.W, l.C}, &gen).to(dtype).to(gpu);
      Tensor w = Tensor::randn({l.K, l.C, l.R, l.S}, &gen).to(dtype).to(gpu);
      const Shape out_shape = ops::conv2d_output_shape(x, w, p);
      Tensor out = Tensor::empty(out_shape, dtype, gpu), dout = Tensor::randn(out_shape, &gen).to(dtype).to(gpu);
      Tensor dx = Tensor::zeros(x.shape(), dtype, gpu), dw = Tensor::zeros(w.shape(), dtype, gpu), none;
      const double flops = 2.0 * static_cast<double>(out.numel()) * static_cast<double>(l.C * l.R * l.S);
      const double ms[3] = {median_ms([&] { ops::conv2d_forward(out, x, w, none, p); }),
                            median_ms([&] { ops::conv2d_backward_input(dx, dout, w, p); }),
                            median_ms([&] { ops::conv2d_backward_weight(dw, none, dout, x, p); })};
      const char* passes[3] = {"fwd", "dgrad", "wgrad"};
      if (csv) {
        for (int i = 0; i < 3; i++)
          std::printf("%s,%s,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%s,%.4f,%.2f\n", dtype_name(dtype), l.name.c_str(),
                      (long long)l.N, (long long)l.H, (long long)l.W, (long long)l.C, (long long)l.K, (long long)l.R,
                      (long long)l.S, (long long)l.stride, passes[i], ms[i], flops / (ms[i] * 1e-3) / 1e12);
      } else {
        std::printf("conv %s %s: fwd %.2f, dgrad %.2f, wgrad %.2f TFLOP/s\n", dtype_name(dtype), l.name.c_str(),
                    flops / (ms[0] * 1e-3) / 1e12, flops / (ms[1] * 1e-3) / 1e12, flops / (ms[2] * 1e-3) / 1e12);
      }
      std::fflush(stdout);
    }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool csv = false;
  tg::FlagSet flags("bench_gpu_conv", "[--csv]",
                    "conv2d on the GPU per layer of cnn-ref and resnet, NHWC, batch 256: forward, dgrad and wgrad in\n"
                    "TFLOP/s, in f32 and bf16. The peer is cuDNN through PyTorch, bench/torch/torch_conv.py.");
  flags.add_switch("csv", &csv, "dtype,layer,N,H,W,C,K,R,S,stride,pass,median_ms,tflops");
  return tg::bench::run_main(flags, argc, argv, [&] { return run(csv); });
}
