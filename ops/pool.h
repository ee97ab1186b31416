// Pooling fronts over NHWC feature maps: check the arguments, work out the output size and the
// windows as PyTorch does, then run the kernel for the tensors' device. f32, bf16 or f16 (staged
// through the f32 kernels on the CPU, ops/f32_staging.h).
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg {

// A 2-D pooling window, as torch.nn.MaxPool2d / AvgPool2d spell it.
struct Pool2dParams {
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;            // max pooling only
  bool ceil_mode = false, count_include_pad = true;  // count_include_pad: average pooling only
};

namespace ops {

// The pooled shape (N,P,Q,C) of x (N,H,W,C): P = floor or ceil((H + 2 pad - dilation (kernel - 1) - 1)
// / stride) + 1, where in ceil mode a last window that would start past the padded input is dropped.
// Checks x and the parameters (kernel, stride, dilation >= 1, 0 <= pad <= kernel / 2, P, Q >= 1);
// `op` names the caller in the messages.
Shape pool2d_output_shape(const char* op, const Tensor& x, const Pool2dParams& p, bool dilated);

// x (N,H,W,C) -> out (N,P,Q,C), argmax (N,P,Q,C) i32 (the flat index h*W + w of each maximum, the
// first one on a tie; saved for the backward).
void maxpool2d_forward(Tensor& out, Tensor& argmax, const Tensor& x, const Pool2dParams& p);
// dx (N,H,W,C) += dout (N,P,Q,C) at argmax.
void maxpool2d_backward(Tensor& dx, const Tensor& dout, const Tensor& argmax);

// x (N,H,W,C) -> out (N,P,Q,C): window means; with count_include_pad the divisor counts the padding
// (but not the part of a ceil-mode window past it), as PyTorch. p.dilation must be 1.
void avgpool2d_forward(Tensor& out, const Tensor& x, const Pool2dParams& p);
// dx (N,H,W,C) += dout (N,P,Q,C) spread evenly over each window.
void avgpool2d_backward(Tensor& dx, const Tensor& dout, const Pool2dParams& p);

// x (N,H,W,C) -> out (N,P,Q,C), (P,Q) taken from out: output i averages input rows
// [floor(i H / P), ceil((i + 1) H / P)), as torch.nn.AdaptiveAvgPool2d (bins may overlap).
void adaptive_avgpool2d_forward(Tensor& out, const Tensor& x);
void adaptive_avgpool2d_backward(Tensor& dx, const Tensor& dout);

}  // namespace ops
}  // namespace tg
