#include "autograd/functions/activation.h"

#include "autograd/engine.h"
#include "ops/activation.h"

namespace tg {

Tensor gelu(const Tensor& x) {
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::gelu_forward(y, xc);
  // Save the input, not the output: gelu' is written in x, and recomputing exp is cheaper than
  // storing it.
  return record("gelu", {x}, y, [xc](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::gelu_backward(g[0], xc, dy);
  });
}

// relu and tanh save their output: both derivatives are simple in it (out > 0; 1 - out^2), and the
// output is usually kept alive by the next layer anyway.
Tensor relu(const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::relu_forward(y, x.contiguous());
  return record("relu", {x}, y, [y](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::relu_backward(g[0], y, dy);
  });
}

Tensor tanh(const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::tanh_forward(y, x.contiguous());
  return record("tanh", {x}, y, [y](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::tanh_backward(g[0], y, dy);
  });
}

// sigmoid and silu save their input: silu' is written in x anyway, and sigmoid' from x keeps its
// relative precision where the output rounds to 1 (see ops/cpu/activation.cpp).
Tensor sigmoid(const Tensor& x) {
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::sigmoid_forward(y, xc);
  return record("sigmoid", {x}, y, [xc](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::sigmoid_backward(g[0], xc, dy);
  });
}

Tensor silu(const Tensor& x) {
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::silu_forward(y, xc);
  return record("silu", {x}, y, [xc](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::silu_backward(g[0], xc, dy);
  });
}

}  // namespace tg
