// Optimizer updates on tensors, in place and without autograd: the kernels behind optim/.
// Every tensor is f32, contiguous, on one device; shapes must match the parameter's.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg::ops {

// One AdamW step on `param` with PyTorch's semantics (torch.optim.AdamW):
//   param *= 1 - lr*weight_decay
//   m = beta1*m + (1-beta1)*grad;  v = beta2*v + (1-beta2)*grad^2
//   param -= lr * (m / (1-beta1^step)) / (sqrt(v / (1-beta2^step)) + eps)
// `step` counts this parameter's updates including this one, so it starts at 1.
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step);

// One SGD step with PyTorch's semantics (torch.optim.SGD): d = grad + weight_decay*param; with
// momentum, buf = d on the first step and buf = momentum*buf + (1-dampening)*d after, then
// d = nesterov ? d + momentum*buf : buf; finally param -= lr*d. `momentum_buf` may be undefined
// when momentum is 0.
void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, float lr, float momentum, float dampening,
                float weight_decay, bool nesterov, bool first_step);

// Sum of squares of all elements, accumulated in double in a fixed order (for the global gradient
// norm; the same on any thread count).
double sum_of_squares(const Tensor& t);

// t *= s, in place (gradient clipping).
void scale_(Tensor& t, float s);

}  // namespace tg::ops
