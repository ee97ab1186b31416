#include "autograd/functions/pool.h"

#include "autograd/engine.h"
#include "autograd/functions/view.h"
#include "ops/check.h"

namespace tg {

Tensor max_pool2d(const Tensor& x, const Pool2dParams& p) {
  ops::check_defined("max_pool2d", x, "x");
  Tensor xc = x.contiguous();
  const Shape pooled = ops::pool2d_output_shape("max_pool2d", xc, p, /*dilated=*/true);
  Tensor y = Tensor::empty(pooled, xc.dtype(), xc.device());
  Tensor argmax = Tensor::empty(pooled, DType::I32, xc.device());
  ops::maxpool2d_forward(y, argmax, xc, p);
  // The indices, not x: the backward only routes each gradient to its window's maximum.
  return record("max_pool2d", {x}, y, [argmax](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::maxpool2d_backward(g[0], dy.contiguous(), argmax);
  });
}

Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p) {
  ops::check_defined("avg_pool2d", x, "x");
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(ops::pool2d_output_shape("avg_pool2d", xc, p, /*dilated=*/false), xc.dtype(), xc.device());
  ops::avgpool2d_forward(y, xc, p);
  return record("avg_pool2d", {x}, y, [p](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::avgpool2d_backward(g[0], dy.contiguous(), p);
  });
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  ops::check_defined("adaptive_avg_pool2d", x, "x");
  Tensor xc = x.contiguous();
  if (xc.dim() != 4 || out_h < 1 || out_w < 1)
    throw Error("adaptive_avg_pool2d: x has shape " + shape_str(xc.shape()) + " and the output size is (" +
                std::to_string(out_h) + ", " + std::to_string(out_w) + "); expected x (N, H, W, C) and sizes >= 1");
  Tensor y = Tensor::empty({xc.size(0), out_h, out_w, xc.size(3)}, xc.dtype(), xc.device());
  ops::adaptive_avgpool2d_forward(y, xc);
  return record("adaptive_avg_pool2d", {x}, y, [](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::adaptive_avgpool2d_backward(g[0], dy.contiguous());
  });
}

Tensor flatten_nhwc(const Tensor& x) {
  ops::check_defined("flatten_nhwc", x, "x");
  if (x.dim() != 4)
    throw Error("flatten_nhwc: x has shape " + shape_str(x.shape()) + ", expected (N, H, W, C)");
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  if (H == 1 && W == 1) return reshape(x, {N, C});  // (C,H,W) and (H,W,C) orders coincide
  // (N,H,W,C) -> (N,C,H,W) -> (N, C*H*W): the reshape of the permuted view copies it into order.
  return reshape(permute(x, {0, 3, 1, 2}), {N, C * H * W});
}

}  // namespace tg
