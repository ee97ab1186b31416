// 2-D convolution on the CPU, NHWC activations and PyTorch-order weights, on raw f32 pointers.
//
//   x (N,H,W,C), weight (K, C/groups, R, S), bias (K) -> out (N,P,Q,K)
//   out[n,p,q,k] = bias[k] + sum_{r,s,c} x[n, p*stride_h - pad_h + r*dilation_h,
//                                           q*stride_w - pad_w + s*dilation_w, g*C/groups + c]
//                                        * weight[k, c, r, s],   g = k / (K/groups)
// with x read as zero outside the image.
//
// The general path is an implicit GEMM (CUTLASS's fprop/dgrad/wgrad mappings) on the blocked GEMM
// of ops/cpu/gemm.h, whose patch-matrix operand is packed straight from x block by block (ops/cpu/
// conv2d_pack.h): no whole-batch im2col buffer. Depthwise convolutions (C/groups == 1) have direct
// kernels instead (ops/cpu/conv2d_depthwise.h): a GEMM with one input channel per group would pad
// every register tile from 1 to MR or NR.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {

// Every size of one convolution. P and Q are the output size the caller computed (and checked).
struct Conv2dGeometry {
  int64_t N = 0, H = 0, W = 0, C = 0;  // input (N,H,W,C)
  int64_t K = 0, R = 0, S = 0;         // weight (K, C/groups, R, S)
  int64_t P = 0, Q = 0;                // output (N,P,Q,K)
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1, groups = 1;

  int64_t channels_per_group() const { return C / groups; }  // Cg
  int64_t filters_per_group() const { return K / groups; }   // Kg
  int64_t patch_size() const { return R * S * channels_per_group(); }  // the GEMM's reduction, R*S*Cg
  int64_t output_pixels() const { return N * P * Q; }
  bool is_depthwise() const { return channels_per_group() == 1 && groups > 1; }
  // The patch matrix is x itself, viewed as (N*H*W, C): a plain GEMM.
  bool is_pointwise() const { return R == 1 && S == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0; }
};

TG_CPU_ISA_BEGIN

// x (N,H,W,C), weight (K,C/g,R,S), bias (K) or null -> out (N,P,Q,K), written.
void conv2d_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2dGeometry& g);

// dx (N,H,W,C) += input gradient of dout (N,P,Q,K).
void conv2d_backward_input(float* dx, const float* dout, const float* weight, const Conv2dGeometry& g);

// dweight (K,C/g,R,S) += weight gradient (null: not wanted); dbias (K) += column sums of dout
// (N*P*Q, K) (null: not wanted).
void conv2d_backward_weight(float* dweight, float* dbias, const float* dout, const float* x, const Conv2dGeometry& g);

TG_CPU_ISA_END
}  // namespace tg::cpu
