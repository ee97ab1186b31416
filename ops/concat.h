// Fronts for concatenation: tensors joined along one existing dimension (the kernel under tg::cat
// and tg::stack). The forward is a byte copy, so it serves every dtype; the backward adds the
// slices of the output gradient into the inputs' gradients (ops::accumulate, float dtypes).
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace tg::ops {

// The shape of `inputs` joined along `dim` (negative counts from the end), after checking what a
// join needs, with messages that name `op` and the entry ("tensors[2]"): a non-empty list of
// defined tensors of at least one dimension, one dtype, one device, one number of dimensions, and
// equal sizes in every dimension but `dim`.
Shape concat_shape(const char* op, const std::vector<Tensor>& inputs, int64_t dim);

// inputs[i] (.., n_i, ..) -> out (.., sum n_i, ..) along `dim` (0 <= dim < out.dim()); every tensor
// contiguous, of out's dtype and device.
void concat_forward(Tensor& out, const std::vector<Tensor>& inputs, int64_t dim);

// dout (.., sum sizes, ..) -> dinputs[i] (.., sizes[i], ..) += the slice of dout that input i filled,
// for every defined dinputs[i] (an undefined one needs no gradient and is passed over).
void concat_backward(std::vector<Tensor>& dinputs, const Tensor& dout, int64_t dim, const std::vector<int64_t>& sizes);

}  // namespace tg::ops
