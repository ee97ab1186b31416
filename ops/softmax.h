// Fronts for softmax and log-softmax over the last dimension: contiguous, at least 1-D, one dtype
// (f32 on the CPU; f32, bf16 or f16 on CUDA, computed in f32); every leading dimension is a row.
// Backward fronts ADD into dinp and take the forward's output.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

void softmax_forward(Tensor& out, const Tensor& inp);
void softmax_backward(Tensor& dinp, const Tensor& out, const Tensor& dout);
void log_softmax_forward(Tensor& out, const Tensor& inp);
void log_softmax_backward(Tensor& dinp, const Tensor& out, const Tensor& dout);

}  // namespace tg::ops
