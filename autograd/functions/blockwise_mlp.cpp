#include "autograd/functions/blockwise_mlp.h"

#include "autograd/engine.h"
#include "ops/blockwise_mlp.h"
#include "ops/check.h"

namespace tg {

namespace {

// A parameter as the kernels read it, detached: the backward keeps its data, not its history.
Tensor kernel_operand(const Tensor& t) { return t.defined() ? t.contiguous().detach() : t; }

}  // namespace

Tensor blockwise_mlp(const Tensor& x, const MlpWeights& weights, int64_t chunk_rows) {
  ops::check_defined("blockwise_mlp", x, "x");
  TG_CHECK(x.dim() >= 1, "blockwise_mlp: x must have shape (..., C), found a 0-d tensor");
  const int64_t C = x.size(-1), rows = C > 0 ? x.numel() / C : 0;
  const Tensor x2 = x.contiguous().detach().view({rows, C});
  ops::MlpParams p;
  p.ln_weight = kernel_operand(weights.ln_weight);
  p.ln_bias = kernel_operand(weights.ln_bias);
  p.ln_eps = weights.ln_eps;
  p.fc_weight = kernel_operand(weights.fc_weight);
  p.fc_bias = kernel_operand(weights.fc_bias);
  p.proj_weight = kernel_operand(weights.proj_weight);
  p.proj_bias = kernel_operand(weights.proj_bias);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor y2 = y.view({rows, C});
  ops::blockwise_mlp_forward(y2, x2, p, chunk_rows);
  // Saved: x (the residual stream holds it anyway) and the parameters; nothing of (rows, H), and
  // not even LayerNorm's row statistics, which the backward gets again when it recomputes the
  // normalised rows (the LayerNorm front always computes both).
  return record("blockwise_mlp",
                {x, weights.ln_weight, weights.ln_bias, weights.fc_weight, weights.fc_bias, weights.proj_weight,
                 weights.proj_bias},
                y, [x2, p, chunk_rows](const Tensor& dy, std::vector<Tensor>& g) {
                  ops::MlpGrads grads;
                  if (g[0].defined()) grads.x = g[0].view(x2.shape());
                  grads.ln_weight = g[1];
                  grads.ln_bias = g[2];
                  grads.fc_weight = g[3];
                  grads.fc_bias = g[4];
                  grads.proj_weight = g[5];
                  grads.proj_bias = g[6];
                  ops::blockwise_mlp_backward(grads, dy.contiguous().view(x2.shape()), x2, p,
                                              ops::blockwise_mlp_backward_chunk_rows(chunk_rows));
                });
}

}  // namespace tg
