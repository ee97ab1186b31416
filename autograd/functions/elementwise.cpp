#include "autograd/functions/elementwise.h"

#include "autograd/engine.h"
#include "ops/elementwise.h"

namespace tg {

// The output takes a's dtype; the front checks that b matches it.
static Tensor empty_broadcast(const char* op, const Tensor& a, const Tensor& b) {
  return Tensor::empty(ops::broadcast_shape(op, a.shape(), b.shape()), a.dtype(), a.device());
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
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::scale_forward(y, xc, s);
  return record("scale", {x}, y, [s](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::scale_backward(g[0], dy, s);
  });
}

Tensor add_scalar(const Tensor& x, float s) {
  Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
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
// In f32, multiplying by 1/s can differ from dividing by s in the last bit; the division keeps x / 3
// equal to what every other framework prints. In bf16/f16 a scalar tensor would round s itself to
// 8 or 11 bits (x / 0.1 off by up to 2^-8 before the result's own rounding), while x * (1/s) in f32
// is within an f32 ulp of x / s and rounds once: the f32 "opmath" PyTorch uses for a Python scalar.
Tensor operator/(const Tensor& x, float s) {
  if (x.dtype() != DType::F32) return scale(x, 1.0f / s);
  return div(x, Tensor::scalar(s, x.dtype(), x.device()));
}
// s becomes a scalar tensor of x's dtype and device (rounded to it in bf16/f16).
Tensor operator/(float s, const Tensor& x) { return div(Tensor::scalar(s, x.dtype(), x.device()), x); }

}  // namespace tg
