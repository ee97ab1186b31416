// dst += src elementwise, for tensors of one shape and any strides: the backward of every view op
// (reshape, transpose, permute, slice, expand) is one of these.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

// dst (shape S, any strides without self-overlap) += src (shape S, any strides), one dtype: f32 on the
// CPU; f32, bf16 or f16 on CUDA
void accumulate(Tensor& dst, const Tensor& src);

}  // namespace tg::ops
