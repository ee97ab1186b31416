#include "autograd/functions/softmax.h"

#include "autograd/engine.h"
#include "ops/softmax.h"

namespace tg {

// Both save their output: the backward of each is written in it (dx = y (dy - sum(dy y)) and
// dx = dy - exp(y) sum(dy)), so the input can be freed.
Tensor softmax(const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::softmax_forward(y, x.contiguous());
  return record("softmax", {x}, y, [y](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::softmax_backward(g[0], y, dy);
  });
}

Tensor log_softmax(const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::log_softmax_forward(y, x.contiguous());
  return record("log_softmax", {x}, y, [y](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::log_softmax_backward(g[0], y, dy);
  });
}

}  // namespace tg
