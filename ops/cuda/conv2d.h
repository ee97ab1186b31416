// 2-D convolution on CUDA: launchers for ops/conv2d.cpp, the layout of the CPU kernels
// (ops/cpu/conv2d.h): NHWC activations, PyTorch-order weights (K, C/groups, R, S), zero padding,
// any stride, dilation and groups.
//
// Each pass is an implicit GEMM per group (CUTLASS's mappings), its operands gathered from the
// tensors tile by tile (no im2col buffer; each tile row's pixel decomposed once per block, 32-bit
// index arithmetic):
//   forward         M = N*P*Q, N = K/groups, K = R*S*C/groups   out = patches(x) . weight^T (+ bias)
//   input gradient  M = N*H*W, N = C/groups, K = R*S*K/groups   dx += scattered(dout) . weight
//   weight gradient M = K/groups, N = R*S*C/groups, K = N*P*Q   dweight += dout^T . patches(x)
// The input gradient's operand reads dout at p = (h + pad - r*dilation) / stride where that divides
// exactly (zero elsewhere), so strided layers pay for the zero taps too.
// f32 runs a SIMT kernel (f32 fma); bf16 and f16 run the same tiles on tensor cores
// (mma.m16n8k16 of ops/cuda/mma.cuh) with f32 accumulation. Every output is rounded once.
//
// Deterministic, no atomics: every output element is owned by one thread, which sums its reduction
// in a fixed order. The weight gradient splits its long reduction (N*P*Q) into a number of slices
// fixed by the shapes (conv2d_weight_splits); each slice writes its partial dweight to the scratch and
// a second kernel adds the slices in order. dbias is summed over fixed chunks of rows, likewise.
//
// Every launcher is asynchronous on cuda::stream(); nothing here synchronizes with the host.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// Every size of one convolution, as ops/cpu/conv2d.h's Conv2dGeometry (P, Q computed by the front).
struct ConvShape {
  int64_t N, H, W, C;  // input (N,H,W,C)
  int64_t K, R, S;     // weight (K, C/groups, R, S)
  int64_t P, Q;        // output (N,P,Q,K)
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
};

// x (N,H,W,C), weight (K,C/g,R,S), bias (K) or null -> out (N,P,Q,K), written; all `dtype`.
void conv2d_forward(DType dtype, void* out, const void* x, const void* weight, const void* bias, const ConvShape& s);

// dx (N,H,W,C) += input gradient of dout (N,P,Q,K).
void conv2d_backward_input(DType dtype, void* dx, const void* dout, const void* weight, const ConvShape& s);

// The slices the weight gradient's reduction over N*P*Q is cut into: about one per 2048 rows, at
// most 64, and at most 65535 / groups (the grid's z dimension).
int64_t conv2d_weight_splits(const ConvShape& s);

// The f32 scratch (in floats) conv2d_backward_weight needs: the slices' partial dweights and the
// chunks' partial dbias.
int64_t conv2d_backward_weight_scratch_floats(const ConvShape& s);

// dweight (K,C/g,R,S) += weight gradient (null: not wanted); dbias (K) += column sums of dout
// (N*P*Q, K) (null: not wanted).
void conv2d_backward_weight(DType dtype, void* dweight, void* dbias, float* scratch, const void* dout, const void* x,
                            const ConvShape& s);

}  // namespace tg::cuda
