// 2-D pooling over NHWC feature maps, f32: every kernel works on whole rows of C channels, so the
// inner loops are contiguous and vectorise along C.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {

// The geometry of a max pooling: input (H,W), output (P,Q), and the window of output (p,q): input
// rows p*stride_h - pad_h + i*dilation_h for i in [0, kernel_h), the same along W. Taps outside the
// input are skipped (padding never wins a max).
struct MaxPoolGeometry {
  int64_t H, W, P, Q;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
};

// One output position's window along one axis for an average: input rows [begin, end) (already
// clipped to the input), and the count that axis contributes to the divisor. The divisor of output
// (p,q) is h_bins[p].count * w_bins[q].count: average and adaptive average pooling differ only in
// their bins (count_include_pad makes the count the window's size with its padding, not the taps).
struct PoolBin {
  int64_t begin, end, count;
};

TG_CPU_ISA_BEGIN

// x (N,H,W,C) -> out (N,P,Q,C), argmax (N,P,Q,C) i32: the flat index h*W + w of the tap each output
// took, the first in window order (row-major) when several tie, as PyTorch. A NaN tap wins (the last
// NaN of the window, as PyTorch), so NaN propagates. A window whose (dilated) taps all fall outside
// the input gives -inf and argmax -1, which the backward skips.
void maxpool2d_forward(float* out, int32_t* argmax, const float* x, int64_t N, int64_t C, const MaxPoolGeometry& g);

// dx (N,H,W,C) += dout (N,P,Q,C) routed to argmax (N,P,Q,C).
void maxpool2d_backward(float* dx, const float* dout, const int32_t* argmax, int64_t N, int64_t C,
                        const MaxPoolGeometry& g);

// x (N,H,W,C) -> out (N,P,Q,C) = sum over the window / divisor; h_bins (P), w_bins (Q). An output of
// one bin spanning the whole input (global average pooling) is a streaming sum of H*W rows of C.
void avgpool2d_forward(float* out, const float* x, int64_t N, int64_t H, int64_t W, int64_t C, const PoolBin* h_bins,
                       int64_t P, const PoolBin* w_bins, int64_t Q);

// dx (N,H,W,C) += dout (N,P,Q,C) / divisor spread over each window.
void avgpool2d_backward(float* dx, const float* dout, int64_t N, int64_t H, int64_t W, int64_t C, const PoolBin* h_bins,
                        int64_t P, const PoolBin* w_bins, int64_t Q);

TG_CPU_ISA_END
}  // namespace tg::cpu
