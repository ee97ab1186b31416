#include "autograd/functions/attention.h"

#include "autograd/engine.h"
#include "ops/attention.h"

namespace tg {

Tensor causal_self_attention(const Tensor& qkv, int64_t n_head) {
  ops::check_attention_qkv(qkv, n_head);
  Tensor x = qkv.contiguous();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2) / 3;
  Tensor out = Tensor::empty({B, T, C}, x.dtype(), x.device());  // lse stays f32: softmax statistics
  Tensor lse = Tensor::empty({B, n_head, T}, DType::F32, x.device());
  ops::attention_forward(out, lse, x, n_head);
  // Saved: the inputs, the output (for D = rowsum(dO * O)) and one log-sum-exp per row, from which
  // the backward recomputes the probabilities tile by tile: O(B T C) memory instead of the
  // O(B NH T^2) probabilities. `out` here is the pre-record handle, so capturing it makes no cycle.
  return record("causal_self_attention", {qkv}, out, [x, out, lse, n_head](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::attention_backward(g[0], dy.contiguous(), x, out, lse, n_head);
  });
}

}  // namespace tg
