#include "autograd/functions/matmul.h"

#include "autograd/engine.h"
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
  Tensor out = Tensor::empty(out_shape, DType::F32, a.device());

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

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  TG_CHECK(x.defined() && weight.defined(), "linear: x or weight is an undefined tensor");
  auto shapes = [&] {
    return "x " + shape_str(x.shape()) + ", weight " + shape_str(weight.shape()) +
           (bias.defined() ? ", bias " + shape_str(bias.shape()) : std::string());
  };
  if (weight.dim() != 2 || x.dim() < 1)
    throw Error("linear: expected x (..., IN) and weight (OUT, IN); got " + shapes());
  const int64_t OUT = weight.size(0), IN = weight.size(1);
  if (x.size(-1) != IN)
    throw Error("linear: x's last dimension " + std::to_string(x.size(-1)) + " must equal weight's IN " +
                std::to_string(IN) + "; got " + shapes());
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != OUT))
    throw Error("linear: bias must have shape (" + std::to_string(OUT) + ") to match weight's OUT; got " + shapes());

  const int64_t rows = leading_numel(x);
  Tensor x2 = x.dim() == 2 ? readable(x) : x.contiguous().detach().view({rows, IN});
  Tensor w = readable(weight);
  Tensor y = Tensor::empty(with_last(x.shape(), OUT), DType::F32, x.device());
  Tensor y2 = y.view({rows, OUT});
  if (bias.defined()) {
    Tensor b = bias.contiguous();
    ops::broadcast_rows(y2, b);
    ops::matmul(y2, x2, w, false, true, 1.0f);  // y = x W^T + b: the GEMM adds onto the bias rows
  } else {
    ops::matmul(y2, x2, w, false, true, 0.0f);
  }
  return record("linear", {x, weight, bias}, y, [x2, w, rows, OUT](const Tensor& dy, std::vector<Tensor>& g) {
    Tensor dy2 = dy.view({rows, OUT});
    if (g[0].defined()) {  // dx (rows, IN) += dy (rows, OUT) @ W (OUT, IN)
      Tensor dx = g[0].view({rows, w.size(1)});
      ops::matmul(dx, dy2, w, false, false, 1.0f);
    }
    if (g[1].defined()) ops::matmul(g[1], dy2, x2, true, false, 1.0f);  // dW (OUT, IN) += dy^T @ x
    if (g.size() > 2 && g[2].defined()) ops::column_sums_accumulate(g[2], dy2);
  });
}

}  // namespace tg
