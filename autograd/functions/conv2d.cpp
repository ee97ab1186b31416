#include "autograd/functions/conv2d.h"

#include "autograd/engine.h"
#include "ops/check.h"
#include "ops/gemm.h"

namespace tg {

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  ops::check_defined("conv2d", x, "x");
  ops::check_defined("conv2d", weight, "weight");
  // The kernels read contiguous tensors; the graph records the originals (autograd/engine.h).
  Tensor xc = x.contiguous().detach(), wc = weight.contiguous().detach();
  Tensor bc = bias.defined() ? bias.contiguous().detach() : Tensor();
  Tensor out = Tensor::empty(ops::conv2d_output_shape(xc, wc, p), xc.dtype(), xc.device());
  ops::conv2d_forward(out, xc, wc, bc, p);
  // Save x and the weight: the input gradient needs the weight, the weight gradient needs x.
  return record("conv2d", {x, weight, bias}, out, [xc, wc, p](const Tensor& dy, std::vector<Tensor>& g) {
    Tensor dout = dy.contiguous();
    if (g[0].defined()) ops::conv2d_backward_input(g[0], dout, wc, p);
    if (g[1].defined()) {
      ops::conv2d_backward_weight(g[1], g[2], dout, xc, p);
    } else if (g[2].defined()) {  // a frozen weight with a trained bias: only the column sums
      Tensor rows = dout.view({dout.numel() / dout.size(3), dout.size(3)});
      ops::column_sums_accumulate(g[2], rows);
    }
  });
}

}  // namespace tg
