// 2-D convolution fronts: check the tensors, choose the algorithm, run the kernel for their device.
//
// Activations are NHWC: x (N,H,W,C) -> out (N,P,Q,K), contiguous. Weights keep PyTorch's order
// (K, C/groups, R, S) so that checkpoints load in PyTorch. Semantics are PyTorch's nn.Conv2d:
// zero padding, dilation, groups (depthwise when groups == C), optional bias. f32, bf16 or f16: the
// CUDA kernels (ops/cuda/conv2d.h) widen on load; the CPU stages halves through the f32 kernels
// (ops/f32_staging.h), every algorithm below, outputs and gradients rounded once.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg {

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;
};

}  // namespace tg

namespace tg::ops {

// Output spatial size P (or Q), as PyTorch: (H + 2*pad - dilation*(R-1) - 1) / stride + 1; throws
// naming conv2d when < 1.
int64_t conv2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation);

// (N, P, Q, K): the output shape of conv2d_forward(x, weight, p), after the same checks of x, weight
// and p (so a caller allocating the output gets the front's errors first).
Shape conv2d_output_shape(const Tensor& x, const Tensor& weight, const Conv2dParams& p);

// x (N,H,W,C) NHWC, weight (K, C/groups, R, S) PyTorch order, bias (K) or undefined -> out (N,P,Q,K), written
void conv2d_forward(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p);

// dx (N,H,W,C) += input gradient of dout (N,P,Q,K)
void conv2d_backward_input(Tensor& dx, const Tensor& dout, const Tensor& weight, const Conv2dParams& p);

// dweight (K,C/groups,R,S) += weight gradient; dbias (K) += column sums of dout, when defined
// (either may be undefined: that gradient is not wanted).
void conv2d_backward_weight(Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x, const Conv2dParams& p);

// How a pass is computed on the CPU. Im2col: the implicit GEMM of ops/cpu/conv2d.h, any shape.
// Winograd: F(4x4,3x3) (F(2x2) for outputs under 4 wide) of ops/cpu/conv2d_winograd.h, for 3x3
// stride-1 undilated ungrouped layers with pad <= 2; forward and input gradient (the weight
// gradient is always the implicit GEMM).
enum class ConvAlgo { Im2col, Winograd };
enum class ConvPass { Forward, InputGradient };

// The algorithm a pass uses for these shapes (x is the input, or dx for the input gradient).
// TG_CONV_ALGO, read once:
//   auto      (default) Winograd where it serves and the layer has >= 16 channels in and out, which
//             measured faster on every such layer of cnn-ref and resnet; a fixed rule, so a
//             command computes the same bits every time it runs (exact resume across processes)
//   timed     each shape timed once with both, the faster kept in memory for the process: the
//             fastest choice on any machine, at the price of runs that may differ in their last bits
//   im2col    always the implicit GEMM
//   winograd  Winograd wherever it serves, the implicit GEMM elsewhere
ConvAlgo conv2d_algorithm(const Tensor& x, const Tensor& weight, const Conv2dParams& p,
                          ConvPass pass = ConvPass::Forward);

}  // namespace tg::ops
