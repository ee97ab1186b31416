#include "autograd/functions/batchnorm.h"

#include "autograd/engine.h"
#include "ops/batchnorm.h"
#include "ops/check.h"

namespace tg {

static Tensor contiguous_or_undefined(const Tensor& t) { return t.defined() ? t.contiguous() : t; }

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, float momentum, float eps, bool relu) {
  ops::check_defined("batch_norm", x, "x");
  Tensor xc = x.contiguous(), wc = contiguous_or_undefined(weight), bc = contiguous_or_undefined(bias);
  // The running statistics are updated in place: the caller's handles, never copies.
  Tensor rm = running_mean, rv = running_var;
  const int64_t C = xc.dim() > 0 ? xc.size(-1) : 0;  // a 0-d x gets a clear error from the front
  Tensor y = Tensor::empty_like(xc);
  Tensor mean = Tensor::empty({C}, DType::F32, xc.device()), rstd = Tensor::empty({C}, DType::F32, xc.device());
  ops::batchnorm_forward(y, mean, rstd, xc, wc, bc, rm, rv, training, momentum, eps, relu);
  // Save x and two floats per channel rather than the normalised tensor: the backward recomputes
  // (x - mean) * rstd (and the ReLU mask) while it streams x anyway.
  return record(relu ? "batch_norm_relu" : "batch_norm", {x, weight, bias}, y,
                [xc, wc, bc, mean, rstd, training, relu](const Tensor& dy, std::vector<Tensor>& g) {
                  ops::batchnorm_backward(g[0], g[1], g[2], dy.contiguous(), xc, wc, bc, mean, rstd, training, relu);
                });
}

}  // namespace tg
