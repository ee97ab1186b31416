// 2-D pooling over NHWC feature maps on CUDA: launchers for ops/pool.cpp, with the semantics of the
// CPU kernels (ops/cpu/pool.h): PyTorch's windows, first maximum on a tie, a NaN tap wins (the last
// one in window order), a window with no tap inside the input gives -inf and argmax -1.
//
// Storage `dtype` is F32, BF16 or F16; every value is computed in f32 and rounded once on store.
// Deterministic: no atomics. The backward passes either gather (each input element sums, in output
// order, the outputs that reach it) or give each (image, channel) to one thread that scatters its
// outputs in order, so the bits depend on the shapes only.
//
// Every launcher is asynchronous on cuda::stream(); nothing here synchronizes with the host.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// The max pooling window, as ops/cpu/pool.h's MaxPoolGeometry: input (H,W), output (P,Q), taps
// p*stride - pad + i*dilation.
struct MaxPoolShape {
  int64_t H, W, P, Q;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// x (N,H,W,C) -> out (N,P,Q,C), argmax (N,P,Q,C) i32 (flat h*W + w).
void maxpool2d_forward(DType dtype, void* out, int32_t* argmax, const void* x, int64_t N, int64_t C,
                       const MaxPoolShape& g);

// The f32 scratch (in floats) maxpool2d_backward needs: 0 for F32 (it adds into dx directly),
// N*H*W*C for half dtypes (every routed gradient is summed in f32 there, then dx rounds once).
int64_t maxpool2d_backward_scratch_floats(DType dtype, int64_t N, int64_t H, int64_t W, int64_t C);

// dx (N,H,W,C) += dout (N,P,Q,C) at argmax (N,P,Q,C); only H, W, P, Q of g are read.
// One thread per (n, c) routes that channel's P*Q outputs in order (the CPU's order).
void maxpool2d_backward(DType dtype, void* dx, float* scratch, const void* dout, const int32_t* argmax, int64_t N,
                        int64_t C, const MaxPoolShape& g);

// Average pooling bins, device arrays of (begin, end, count) i32 triples, as ops/cpu/pool.h's PoolBin:
// h_bins (P), w_bins (Q). Output (p,q) averages rows [h.begin, h.end) x [w.begin, w.end) with divisor
// h.count * w.count. Bins are ordered: begin and end never decrease with p (true of average and
// adaptive bins), which the backward's gather relies on.
// x (N,H,W,C) -> out (N,P,Q,C).
void avgpool2d_forward(DType dtype, void* out, const void* x, int64_t N, int64_t H, int64_t W, int64_t C,
                       const int32_t* h_bins, int64_t P, const int32_t* w_bins, int64_t Q);

// dx (N,H,W,C) += sum over the windows holding each input of dout / divisor, gathered in (p, q)
// order in f32 and added to dx with one rounding.
void avgpool2d_backward(DType dtype, void* dx, const void* dout, int64_t N, int64_t H, int64_t W, int64_t C,
                        const int32_t* h_bins, int64_t P, const int32_t* w_bins, int64_t Q);

}  // namespace tg::cuda
