#include "autograd/functions/dropout.h"

#include "autograd/engine.h"
#include "ops/dropout.h"

namespace tg {

Tensor dropout(const Tensor& x, float p, bool training, Generator* gen) {
  ops::check_dropout_probability("dropout", p);
  if (!training || p == 0.0f) return x;
  // The key is the only state the mask needs, so the backward recomputes the mask from it instead
  // of saving a byte per element.
  uint64_t key = (gen ? *gen : default_generator()).next_u64();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::dropout_forward(y, x.contiguous(), p, key);
  return record("dropout", {x}, y, [p, key](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[0].defined()) ops::dropout_backward(g[0], dy, p, key);
  });
}

}  // namespace tg
