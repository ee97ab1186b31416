#include "autograd/functions/elementwise.h"

#include "autograd/engine.h"
#include "ops/elementwise.h"

namespace tg {

static Tensor empty_broadcast(const char* op, const Tensor& a, const Tensor& b) {
  return Tensor::empty(ops::broadcast_shape(op, a.shape(), b.shape()), DType::F32, a.device());
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = empty_broadcast("add", a, b);
  ops::add_forward(y, a, b);
  return record("add", {a, b}, y, [](const Tensor& dy, std::vector<Tensor>& g) { ops::add_backward(g[0], g[1], dy); });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = empty_broadcast("sub", a, b);
  ops::sub_forward(y, a, b);
  return record("sub", {a, b}, y, [](const Tensor& dy, std::vector<Tensor>& g) { ops::sub_backward(g[0], g[1], dy); });
}

// mul and div save their operands (handles, not copies); each gradient needs the other operand.
Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = empty_broadcast("mul", a, b);
  ops::mul_forward(y, a, b);
  return record("mul", {a, b}, y,
                [a, b](const Tensor& dy, std::vector<Tensor>& g) { ops::mul_backward(g[0], g[1], dy, a, b); });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor y = empty_broadcast("div", a, b);
  ops::div_forward(y, a, b);
  return record("div", {a, b}, y,
                [a, b](const Tensor& dy, std::vector<Tensor>& g) { ops::div_backward(g[0], g[1], dy, a, b); });
}

Tensor scale(const Tensor& x, float s) {
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  ops::scale_forward(y, xc, s);
  return record("scale", {x}, y, [s](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::scale_backward(g[0], dy, s);
  });
}

Tensor add_scalar(const Tensor& x, float s) {
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), DType::F32, x.device());
  ops::add_scalar_forward(y, xc, s);
  return record("add_scalar", {x}, y, [](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::scale_backward(g[0], dy, 1.0f);
  });
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return scale(x, -1.0f); }

Tensor operator+(const Tensor& x, float s) { return add_scalar(x, s); }
Tensor operator+(float s, const Tensor& x) { return add_scalar(x, s); }
Tensor operator-(const Tensor& x, float s) { return add_scalar(x, -s); }
Tensor operator-(float s, const Tensor& x) { return add_scalar(scale(x, -1.0f), s); }
Tensor operator*(const Tensor& x, float s) { return scale(x, s); }
Tensor operator*(float s, const Tensor& x) { return scale(x, s); }
// Multiplying by 1/s can differ from dividing by s in the last bit; the division keeps x / 3 equal
// to what every other framework prints.
Tensor operator/(const Tensor& x, float s) { return div(x, Tensor::scalar(s, DType::F32, x.device())); }
Tensor operator/(float s, const Tensor& x) { return div(Tensor::scalar(s, DType::F32, x.device()), x); }

}  // namespace tg
