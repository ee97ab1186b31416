// Depthwise convolution (C/groups == 1): filter k reads only input channel k / M, where
// M = K / C is the channel multiplier (1 for the usual depthwise layer). Direct kernels, shapes and
// conventions as ops/cpu/conv2d.h: each output is a sum of R*S products, too short a reduction for
// a GEMM, so the loops run over output pixels with the filters vectorised along k (NHWC keeps a
// pixel's channels contiguous).
#pragma once
#include "ops/cpu/conv2d.h"
#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// x (N,H,W,C), weight (K,1,R,S), bias (K) or null -> out (N,P,Q,K), written.
void conv2d_depthwise_forward(float* out, const float* x, const float* weight, const float* bias,
                              const Conv2dGeometry& g);

// dx (N,H,W,C) += input gradient of dout (N,P,Q,K). Each input pixel gathers from the outputs that
// read it, so threads own disjoint input rows and nothing races.
void conv2d_depthwise_backward_input(float* dx, const float* dout, const float* weight, const Conv2dGeometry& g);

// dweight (K,1,R,S) += weight gradient. Threads sum bands of output rows into private partials,
// added in thread order: the same result on every run with the same thread count.
void conv2d_depthwise_backward_weight(float* dweight, const float* dout, const float* x, const Conv2dGeometry& g);

TG_CPU_ISA_END
}  // namespace tg::cpu
