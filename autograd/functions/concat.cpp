#include "autograd/functions/concat.h"

#include <algorithm>
#include <string>

#include "autograd/engine.h"
#include "autograd/functions/view.h"
#include "ops/concat.h"

namespace tg {

namespace {
// cat, with the errors naming `op` (stack's come out as stack's).
Tensor join(const char* op, const std::vector<Tensor>& tensors, int64_t dim) {
  const Shape shape = ops::concat_shape(op, tensors, dim);
  const int64_t d = wrap_dim(dim, static_cast<int64_t>(shape.size()), op);
  std::vector<Tensor> inputs;
  std::vector<int64_t> sizes;
  for (const Tensor& t : tensors) {
    inputs.push_back(t.contiguous());
    sizes.push_back(t.shape()[d]);
  }
  Tensor out = Tensor::empty(shape, tensors[0].dtype(), tensors[0].device());
  ops::concat_forward(out, inputs, d);
  return record("cat", tensors, out, [d, sizes](const Tensor& dy, std::vector<Tensor>& g) {
    ops::concat_backward(g, dy, d, sizes);
  });
}
}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) { return join("cat", tensors, dim); }

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) throw Error("stack: tensors is an empty list; expected at least one tensor");
  for (size_t i = 0; i < tensors.size(); i++) {
    if (!tensors[i].defined()) throw Error("stack: tensors[" + std::to_string(i) + "] is an undefined tensor");
    if (tensors[i].shape() != tensors[0].shape())
      throw Error("stack: tensors[" + std::to_string(i) + "] has shape " + shape_str(tensors[i].shape()) +
                  " but tensors[0] has " + shape_str(tensors[0].shape()) + "; stack needs equal shapes");
  }
  const int64_t d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> unsqueezed;
  for (const Tensor& t : tensors) unsqueezed.push_back(unsqueeze(t, d));
  return join("stack", unsqueezed, d);
}

namespace {
// Checks x and wraps dim for split and chunk.
int64_t split_dim(const char* op, const Tensor& x, int64_t dim) {
  if (!x.defined()) throw Error(std::string(op) + ": x is an undefined tensor");
  if (x.dim() == 0) throw Error(std::string(op) + ": x is zero-dimensional (shape ()) and has no dimension to split");
  return wrap_dim(dim, x.dim(), op);
}
}  // namespace

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  const int64_t d = split_dim("split", x, dim);
  const int64_t size = x.shape()[d];
  if (split_size < 0 || (split_size == 0 && size > 0))
    throw Error("split: split_size is " + std::to_string(split_size) + "; expected a positive size (0 only for a" +
                " dimension of size 0), and dimension " + std::to_string(d) + " of x (shape " + shape_str(x.shape()) +
                ") has size " + std::to_string(size));
  if (size == 0) return {slice(x, d, 0, 0)};
  std::vector<Tensor> parts;
  for (int64_t start = 0; start < size; start += split_size)
    parts.push_back(slice(x, d, start, std::min(start + split_size, size)));
  return parts;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = split_dim("split", x, dim);
  int64_t total = 0;
  std::string listed;
  for (int64_t s : sizes) {
    listed += (listed.empty() ? "" : ", ") + std::to_string(s);
    if (s < 0) throw Error("split: sizes (" + listed + ") has the negative size " + std::to_string(s));
    total += s;
  }
  if (total != x.shape()[d])
    throw Error("split: sizes (" + listed + ") sum to " + std::to_string(total) + ", but dimension " +
                std::to_string(d) + " of x (shape " + shape_str(x.shape()) + ") has size " + std::to_string(x.shape()[d]));
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t s : sizes) {
    parts.push_back(slice(x, d, start, start + s));
    start += s;
  }
  return parts;
}

std::vector<Tensor> split(const Tensor& x, std::initializer_list<int64_t> sizes, int64_t dim) {
  return split(x, std::vector<int64_t>(sizes), dim);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  const int64_t d = split_dim("chunk", x, dim);
  if (chunks <= 0) throw Error("chunk: chunks is " + std::to_string(chunks) + "; expected at least 1");
  const int64_t size = x.shape()[d];
  if (size == 0) {
    std::vector<Tensor> parts;
    for (int64_t i = 0; i < chunks; i++) parts.push_back(slice(x, d, 0, 0));
    return parts;
  }
  return split(x, (size + chunks - 1) / chunks, d);
}

}  // namespace tg
