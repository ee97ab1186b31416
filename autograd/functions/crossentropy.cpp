#include "autograd/functions/crossentropy.h"

#include "autograd/engine.h"
#include "ops/check.h"
#include "ops/crossentropy.h"

namespace tg {

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index, float label_smoothing) {
  ops::check_defined("cross_entropy", logits, "logits");
  ops::check_defined("cross_entropy", targets, "targets");
  Tensor lc = logits.contiguous(), tc = targets.contiguous();
  Tensor loss = Tensor::empty({}, DType::F32, lc.device());
  Tensor lse = Tensor::empty(tc.shape(), DType::F32, lc.device());
  ops::crossentropy_forward(loss, lse, lc, tc, ignore_index, label_smoothing);
  return record("cross_entropy", {logits, targets}, loss,
                [lc, tc, lse, ignore_index, label_smoothing](const Tensor& dloss, std::vector<Tensor>& g) {
                  if (g[0].defined()) ops::crossentropy_backward(g[0], dloss, lc, tc, lse, ignore_index, label_smoothing);
                });
}

}  // namespace tg
