// Differentiable softmax and log-softmax over the last dimension, numerically stable for logits of
// any magnitude (the row maximum is subtracted before exponentiating).
#pragma once
#include "tensor/tensor.h"

namespace tg {

Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);

}  // namespace tg
