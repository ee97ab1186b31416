#include "autograd/functions/layernorm.h"

#include "autograd/engine.h"
#include "ops/accumulate.h"
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

AddLayerNorm add_layernorm(const Tensor& x, const Tensor& delta, const Tensor& weight, const Tensor& bias, float eps) {
  ops::check_defined("add_layernorm", x, "x");
  ops::check_defined("add_layernorm", delta, "delta");
  Tensor xc = x.contiguous(), dc = delta.contiguous(), wc = contiguous_or_undefined(weight),
         bc = contiguous_or_undefined(bias);
  Shape rows(xc.shape().begin(), xc.shape().end() - (xc.dim() > 0 ? 1 : 0));
  Tensor sum = Tensor::empty_like(xc), normalized = Tensor::empty_like(xc);
  Tensor mean = Tensor::empty(rows, DType::F32, xc.device()), rstd = Tensor::empty(rows, DType::F32, xc.device());
  ops::add_layernorm(sum, normalized, mean, rstd, xc, dc, wc, bc, eps);
  // d sum = (gradient of the sum output) + layernorm's backward of the normalized one; x and delta
  // both receive it. It is built in the first wanted input's zero-filled buffer and added into the
  // other's, so a single pass of the LayerNorm backward serves both.
  std::vector<Tensor> outputs =
      record("add_layernorm", {x, delta, weight, bias}, {sum, normalized},
             [sum, wc, mean, rstd](const std::vector<Tensor>& dy, std::vector<Tensor>& g) {
               Tensor& dsum = g[0].defined() ? g[0] : g[1];
               if (dsum.defined()) ops::accumulate(dsum, dy[0]);
               ops::layernorm_backward(dsum, g[2], g[3], dy[1], sum, wc, mean, rstd);
               if (g[0].defined() && g[1].defined()) ops::accumulate(g[1], g[0]);
             });
  return {outputs[0], outputs[1]};
}

}  // namespace tg
