#include "autograd/functions/layernorm.h"

#include "autograd/engine.h"
#include "ops/check.h"
#include "ops/layernorm.h"

namespace tg {

static Tensor contiguous_or_undefined(const Tensor& t) { return t.defined() ? t.contiguous() : t; }

Tensor layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  ops::check_defined("layernorm", x, "x");
  Tensor xc = x.contiguous(), wc = contiguous_or_undefined(weight), bc = contiguous_or_undefined(bias);
  // One mean and rstd per row; a 0-d x gets an empty shape here and a clear error from the front.
  Shape rows(xc.shape().begin(), xc.shape().end() - (xc.dim() > 0 ? 1 : 0));
  Tensor y = Tensor::empty_like(xc);
  Tensor mean = Tensor::empty(rows, DType::F32, xc.device()), rstd = Tensor::empty(rows, DType::F32, xc.device());
  ops::layernorm_forward(y, mean, rstd, xc, wc, bc, eps);
  // Save x and the per-row statistics rather than the normalised rows: 2 floats per row instead
  // of C, and the backward recomputes norm = (x - mean) * rstd while x is in cache anyway.
  return record("layernorm", {x, weight, bias}, y, [xc, wc, mean, rstd](const Tensor& dy, std::vector<Tensor>& g) {
    ops::layernorm_backward(g[0], g[1], g[2], dy.contiguous(), xc, wc, mean, rstd);
  });
}

}  // namespace tg
