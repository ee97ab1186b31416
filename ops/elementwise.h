// Fronts for the elementwise arithmetic kernels: check the arguments, pick the kernel layout, and
// dispatch on the device. Binary ops broadcast like numpy and PyTorch: shapes align at the trailing
// dimension, a missing or size-1 dimension stretches to the other operand's size.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

// The shape `a op b` broadcasts to; throws naming `op` and both shapes when they do not broadcast.
Shape broadcast_shape(const char* op, const Shape& a, const Shape& b);

// out (the broadcast shape, contiguous) = a op b; a and b with any strides. One dtype for all three:
// f32 on the CPU; f32, bf16 or f16 on CUDA (f32 arithmetic, one rounding). So for every front here.
void add_forward(Tensor& out, const Tensor& a, const Tensor& b);
void sub_forward(Tensor& out, const Tensor& a, const Tensor& b);
void mul_forward(Tensor& out, const Tensor& a, const Tensor& b);
void div_forward(Tensor& out, const Tensor& a, const Tensor& b);

// Gradients of out = a op b, given dout (out's shape): da (a's shape, contiguous) and db (b's shape,
// contiguous) ADD the gradient summed over the dimensions their operand was broadcast along. Either
// may be undefined to skip it. Same-shape operands and a bias-like row ((.., C) op (C); on CUDA any
// trailing dimensions, such as (B, T, C) op (T, C)) take one fused pass.
void add_backward(Tensor& da, Tensor& db, const Tensor& dout);
void sub_backward(Tensor& da, Tensor& db, const Tensor& dout);
void mul_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b);
void div_backward(Tensor& da, Tensor& db, const Tensor& dout, const Tensor& a, const Tensor& b);

// out = inp * s and its backward dinp += dout * s; out = inp + s (backward: scale_backward, s = 1).
void scale_forward(Tensor& out, const Tensor& inp, float s);
void scale_backward(Tensor& dinp, const Tensor& dout, float s);
void add_scalar_forward(Tensor& out, const Tensor& inp, float s);

}  // namespace tg::ops
