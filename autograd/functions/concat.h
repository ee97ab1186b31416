// Joining and splitting, with PyTorch's semantics (negative dimensions count from the end).
//
// cat copies (ops/concat.h); stack is unsqueeze + cat. split and chunk copy nothing: their parts
// are views of x (tg::slice), each recorded as a differentiable slice, so a part's gradient is
// added into its place in x's gradient and parts that are never used cost nothing.
#pragma once
#include <initializer_list>
#include <vector>

#include "tensor/tensor.h"

namespace tg {

// The tensors joined along `dim`: same dtype, device and number of dimensions, equal sizes in every
// other dimension; any dtype (gradients flow to the float ones).
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// The tensors, all of one shape, joined along a new dimension `dim` (-1 appends it last).
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);

// Parts of `split_size` along `dim`, the last one smaller when the size does not divide evenly
// (one empty part for a dimension of size 0).
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
// Parts of the given sizes along `dim`; they must sum to x's size there (a size may be 0).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
// So that split(x, {2}, 1) means the sizes {2}, not parts of 2 (a braced list prefers this one).
std::vector<Tensor> split(const Tensor& x, std::initializer_list<int64_t> sizes, int64_t dim = 0);
// `chunks` parts of ceil(size / chunks) along `dim`, the last smaller; as in PyTorch there may be
// fewer than `chunks` (a size of 6 in 4 chunks gives 3 of 2). A dimension of size 0 gives `chunks`
// empty parts.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);

}  // namespace tg
