// Differentiable dropout.
#pragma once
#include "tensor/tensor.h"

namespace tg {

// Identity when !training or p == 0. Otherwise each element is zeroed with probability p and the
// kept ones are scaled by 1 / (1 - p), so the expected value is unchanged. The mask comes from `gen`
// (default_generator() when null): one 64-bit draw per call keys it, so re-seeding reproduces it,
// and the backward applies the same mask. Throws unless 0 <= p < 1.
Tensor dropout(const Tensor& x, float p, bool training, Generator* gen = nullptr);

}  // namespace tg
