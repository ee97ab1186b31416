// Fronts for the activation kernels (GELU tanh approximation, ReLU, tanh, sigmoid, SiLU): contiguous, any shape
// (treated as N elements), all tensors one dtype (f32 on the CPU; f32, bf16 or f16 on CUDA).
// Backward fronts ADD into dinp.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

void gelu_forward(Tensor& out, const Tensor& inp);
void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);  // needs the input
void relu_forward(Tensor& out, const Tensor& inp);
void relu_backward(Tensor& dinp, const Tensor& out, const Tensor& dout);  // needs the output
void tanh_forward(Tensor& out, const Tensor& inp);
void tanh_backward(Tensor& dinp, const Tensor& out, const Tensor& dout);  // needs the output
void sigmoid_forward(Tensor& out, const Tensor& inp);
void sigmoid_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);  // needs the input
void silu_forward(Tensor& out, const Tensor& inp);
void silu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout);  // needs the input

}  // namespace tg::ops
