#include "autograd/functions/reduce.h"

#include "autograd/engine.h"
#include "ops/reduce.h"

namespace tg {

// sum and mean share everything but the scale (1, or 1 / the number of elements summed).
static Tensor sum_all_scaled(const char* name, const Tensor& x, float scale) {
  Tensor y = Tensor::empty({}, x.dtype(), x.device());
  ops::sum_forward(y, x.contiguous(), scale);
  return record(name, {x}, y, [scale](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::sum_backward(g[0], dy, scale);
  });
}

static Tensor sum_dim_scaled(const char* name, const Tensor& x, int64_t dim, bool keepdim, bool is_mean) {
  dim = wrap_dim(dim, x.dim(), name);
  Shape shape = x.shape();
  int64_t size = shape[dim];
  float scale = is_mean ? 1.0f / static_cast<float>(size) : 1.0f;
  if (keepdim) shape[dim] = 1;
  else shape.erase(shape.begin() + dim);
  Tensor y = Tensor::empty(shape, x.dtype(), x.device());
  ops::sum_dim_forward(y, x.contiguous(), dim, scale);
  return record(name, {x}, y, [dim, scale](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::sum_dim_backward(g[0], dy, dim, scale);
  });
}

Tensor sum(const Tensor& x) { return sum_all_scaled("sum", x, 1.0f); }
Tensor sum(const Tensor& x, int64_t dim, bool keepdim) { return sum_dim_scaled("sum", x, dim, keepdim, false); }
Tensor mean(const Tensor& x) {
  return sum_all_scaled("mean", x, 1.0f / static_cast<float>(x.numel()));
}
Tensor mean(const Tensor& x, int64_t dim, bool keepdim) { return sum_dim_scaled("mean", x, dim, keepdim, true); }

}  // namespace tg
