// dst += src elementwise, for tensors of one shape and any strides: the backward of every view op
// (reshape, transpose, permute, slice, expand) is one of these.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

// dst (f32, shape S, any strides without self-overlap) += src (f32, shape S, any strides)
void accumulate(Tensor& dst, const Tensor& src);

}  // namespace tg::ops
