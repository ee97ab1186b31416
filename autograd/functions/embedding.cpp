#include "autograd/functions/embedding.h"

#include "autograd/engine.h"
#include "ops/check.h"
#include "ops/embedding.h"

namespace tg {

Tensor embedding(const Tensor& ids, const Tensor& weight) {
  ops::check_defined("embedding", ids, "ids");
  ops::check_dim("embedding", weight, "weight", 2);
  Tensor idsc = ids.contiguous(), wc = weight.contiguous();
  Shape shape = idsc.shape();
  shape.push_back(wc.size(1));
  Tensor out = Tensor::empty(shape, wc.dtype(), wc.device());
  ops::embedding_forward(out, idsc, wc);
  // The backward needs only the ids: the output gradient's rows go back to the rows they came from.
  return record("embedding", {ids, weight}, out, [idsc](const Tensor& dy, std::vector<Tensor>& g) {
    if (g[1].defined()) ops::embedding_backward(g[1], dy.contiguous(), idsc);
  });
}

}  // namespace tg
