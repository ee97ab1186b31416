#include "autograd/functions/matmul.h"

#include "autograd/engine.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/gemm.h"

namespace tg {

namespace {

// The operand as ops::matmul can read it: itself when row-major or a transposed view in its last
// two dims, otherwise a contiguous copy. Detached: the backward closures keep the data alive, not
// the graph that produced it.
Tensor readable(const Tensor& t) { return (ops::matmul_readable(t) ? t : t.contiguous()).detach(); }

int64_t leading_numel(const Tensor& t) {
  int64_t n = 1;
  for (int64_t d = 0; d + 1 < t.dim(); d++) n *= t.size(d);
  return n;
}

Shape with_last(const Shape& shape, int64_t last) {
  Shape out = shape;
  out.back() = last;
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  TG_CHECK(a.defined() && b.defined(), "matmul: an operand is an undefined tensor");
  auto shapes = [&] { return "a " + shape_str(a.shape()) + " @ b " + shape_str(b.shape()); };
  if (a.dim() < 2 || b.dim() < 2 || b.dim() > 3 || (b.dim() == 3 && a.dim() != 3))
    throw Error("matmul: expected a (M,K) @ b (K,N), a (B,M,K) @ b (B,K,N), or a (..., M, K) @ b (K,N); got " +
                shapes());
  if (a.size(-1) != b.size(-2))
    throw Error("matmul: inner dimensions differ (a's last " + std::to_string(a.size(-1)) + " vs b's " +
                std::to_string(b.size(-2)) + "); got " + shapes());
  if (b.dim() == 3 && a.size(0) != b.size(0))
    throw Error("matmul: batch sizes differ (" + std::to_string(a.size(0)) + " vs " + std::to_string(b.size(0)) +
                "); got " + shapes());
  const int64_t K = a.size(-1), N = b.size(-1);
  const Shape out_shape = with_last(a.shape(), N);
  Tensor bb = readable(b);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());

  // A 3-D a that is a transposed view keeps its batch and shares b; anything else with a 2-D b
  // folds its leading dims into M: one GEMM of (rows, K) @ (K, N), whatever a's rank.
  const bool batched_view = a.dim() == 3 && !a.is_contiguous() && ops::matmul_readable(a);
  if (b.dim() == 2 && !batched_view) {
    const int64_t rows = leading_numel(a);
    Tensor a2 = a.dim() == 2 ? readable(a) : a.contiguous().detach().view({rows, K});
    Tensor out2 = out.view({rows, N});
    ops::matmul(out2, a2, bb);
    return record("matmul", {a, b}, out, [a2, bb, rows, N](const Tensor& dy, std::vector<Tensor>& g) {
      Tensor dy2 = dy.view({rows, N});
      if (g[0].defined()) {  // da (rows, K) += dy (rows, N) @ b^T
        Tensor da = g[0].view({rows, a2.size(1)});
        ops::matmul(da, dy2, bb, false, true, 1.0f);
      }
      if (g[1].defined()) ops::matmul(g[1], a2, dy2, true, false, 1.0f);  // db (K, N) += a^T @ dy
    });
  }

  // Batched: a (B, M, K) with b (B, K, N), or a transposed-view a (B, M, K) sharing a 2-D b.
  Tensor a3 = readable(a);
  Tensor out3 = out.view({a3.size(0), a3.size(1), N});
  ops::matmul(out3, a3, bb);
  return record("matmul", {a, b}, out, [a3, bb](const Tensor& dy, std::vector<Tensor>& g) {
    Tensor dy3 = dy.view({a3.size(0), a3.size(1), bb.size(-1)});
    if (g[0].defined()) {  // da (B, M, K) += dy (B, M, N) @ b^T
      Tensor da = g[0].view(a3.shape());
      ops::matmul(da, dy3, bb, false, true, 1.0f);
    }
    if (!g[1].defined()) return;
    if (bb.dim() == 3) {
      ops::matmul(g[1], a3, dy3, true, false, 1.0f);  // db (B, K, N) += a^T @ dy, item by item
    } else {
      // A shared b sums its gradient over the batch; each item's GEMM adds into the same buffer.
      for (int64_t i = 0; i < a3.size(0); i++) ops::matmul(g[1], a3.select(0, i), dy3.select(0, i), true, false, 1.0f);
    }
  });
}

namespace {

// The operands of a Linear as the GEMM reads them: x flattened to (rows, IN), the weight as stored
// or as a transposed view, a contiguous bias (or undefined).
struct LinearOperands {
  Tensor x2, w, b;
  int64_t rows, IN, OUT;
  Shape out_shape;
};

LinearOperands linear_operands(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  TG_CHECK(x.defined() && weight.defined(), std::string(op) + ": x or weight is an undefined tensor");
  auto shapes = [&] {
    return "x " + shape_str(x.shape()) + ", weight " + shape_str(weight.shape()) +
           (bias.defined() ? ", bias " + shape_str(bias.shape()) : std::string());
  };
  if (weight.dim() != 2 || x.dim() < 1)
    throw Error(std::string(op) + ": expected x (..., IN) and weight (OUT, IN); got " + shapes());
  LinearOperands L;
  L.OUT = weight.size(0);
  L.IN = weight.size(1);
  if (x.size(-1) != L.IN)
    throw Error(std::string(op) + ": x's last dimension " + std::to_string(x.size(-1)) + " must equal weight's IN " +
                std::to_string(L.IN) + "; got " + shapes());
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != L.OUT))
    throw Error(std::string(op) + ": bias must have shape (" + std::to_string(L.OUT) + ") to match weight's OUT; got " +
                shapes());
  L.rows = leading_numel(x);
  L.x2 = x.dim() == 2 ? readable(x) : x.contiguous().detach().view({L.rows, L.IN});
  L.w = readable(weight);
  if (bias.defined()) L.b = bias.contiguous().detach();
  L.out_shape = with_last(x.shape(), L.OUT);
  return L;
}

// dy (rows, OUT) -> g[0] dx (rows, IN) += dy W, g[1] dW (OUT, IN) += dy^T x, g[2] db (OUT) += column
// sums of dy: GEMMs that accumulate into the gradient buffers with beta = 1, no temporaries.
void linear_backward(const Tensor& dy2, const Tensor& x2, const Tensor& w, std::vector<Tensor>& g) {
  if (g[0].defined()) {
    Tensor dx = g[0].view({x2.size(0), w.size(1)});
    ops::matmul(dx, dy2, w, false, false, 1.0f);
  }
  if (g[1].defined()) ops::matmul(g[1], dy2, x2, true, false, 1.0f);
  if (g.size() > 2 && g[2].defined()) ops::column_sums_accumulate(g[2], dy2);
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  LinearOperands L = linear_operands("linear", x, weight, bias);
  Tensor y = Tensor::empty(L.out_shape, x.dtype(), x.device());
  Tensor y2 = y.view({L.rows, L.OUT});
  ops::linear(y2, L.x2, L.w, L.b);  // y = x W^T + b: one GEMM with the bias in its epilogue on CUDA
  return record("linear", {x, weight, bias}, y, [x2 = L.x2, w = L.w, rows = L.rows, OUT = L.OUT](
                                                    const Tensor& dy, std::vector<Tensor>& g) {
    linear_backward(dy.view({rows, OUT}), x2, w, g);
  });
}

Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  LinearOperands L = linear_operands("linear_gelu", x, weight, bias);
  Tensor y = Tensor::empty(L.out_shape, x.dtype(), x.device());
  Tensor y2 = y.view({L.rows, L.OUT});
  ops::LinearEpilogue epilogue;
  epilogue.gelu = true;
  // The pre-activation is only worth writing when a backward will read it.
  const bool needs_backward = any_requires_grad({x, weight, bias});
  if (needs_backward) epilogue.pre_gelu = Tensor::empty({L.rows, L.OUT}, x.dtype(), x.device());
  ops::linear(y2, L.x2, L.w, L.b, epilogue);
  if (!needs_backward) return y;
  return record("linear_gelu", {x, weight, bias}, y, [x2 = L.x2, w = L.w, u = epilogue.pre_gelu](
                                                         const Tensor& dy, std::vector<Tensor>& g) {
    // du = gelu'(u) dy; gelu_backward adds into its output, so du starts at zero.
    Tensor du = Tensor::zeros(u.shape(), u.dtype(), u.device());
    ops::gelu_backward(du, u, dy.view(u.shape()));
    linear_backward(du, x2, w, g);
  });
}

Tensor linear_residual(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& residual) {
  LinearOperands L = linear_operands("linear_residual", x, weight, bias);
  TG_CHECK(residual.defined(), "linear_residual: residual is an undefined tensor");
  if (residual.shape() != L.out_shape)
    throw Error("linear_residual: residual has shape " + shape_str(residual.shape()) + ", expected " +
                shape_str(L.out_shape) + " (the output of x " + shape_str(x.shape()) + " @ weight " +
                shape_str(weight.shape()) + "^T)");
  Tensor y = Tensor::empty(L.out_shape, x.dtype(), x.device());
  Tensor y2 = y.view({L.rows, L.OUT});
  ops::LinearEpilogue epilogue;
  epilogue.residual = residual.contiguous().detach().view({L.rows, L.OUT});
  ops::linear(y2, L.x2, L.w, L.b, epilogue);
  return record("linear_residual", {x, weight, bias, residual}, y,
                [x2 = L.x2, w = L.w, rows = L.rows, OUT = L.OUT](const Tensor& dy, std::vector<Tensor>& g) {
                  Tensor dy2 = dy.view({rows, OUT});
                  if (g[3].defined()) {  // dresidual += dy
                    Tensor none;
                    ops::add_backward(g[3], none, dy);
                  }
                  linear_backward(dy2, x2, w, g);
                });
}

}  // namespace tg
