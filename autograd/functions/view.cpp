#include "autograd/functions/view.h"

#include "autograd/engine.h"
#include "ops/accumulate.h"

namespace tg {

Tensor reshape(const Tensor& x, const Shape& shape) {
  Shape in_shape = x.shape();
  return record("reshape", {x}, x.reshape(shape), [in_shape](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::accumulate(g[0], dy.view(in_shape));
  });
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor y = x.permute(dims);
  std::vector<int64_t> inverse(dims.size());
  for (size_t i = 0; i < dims.size(); i++) inverse[wrap_dim(dims[i], x.dim(), "permute")] = static_cast<int64_t>(i);
  return record("permute", {x}, y, [inverse](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::accumulate(g[0], dy.permute(inverse));
  });
}

Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1) {
  return record("transpose", {x}, x.transpose(dim0, dim1), [dim0, dim1](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::accumulate(g[0], dy.transpose(dim0, dim1));
  });
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  return record("slice", {x}, x.slice(dim, start, end, step), [=](const Tensor& dy, std::vector<Tensor>& g) {
    if (!g[0].defined()) return;
    Tensor window = g[0].slice(dim, start, end, step);
    ops::accumulate(window, dy);
  });
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  return record("unsqueeze", {x}, x.unsqueeze(d), [d](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::accumulate(g[0], dy.squeeze(d));
  });
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return record("contiguous", {x}, x.contiguous(), [](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::accumulate(g[0], dy);
  });
}

}  // namespace tg
