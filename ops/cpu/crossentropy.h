// Fused softmax + cross-entropy over rows of V logits, f32. The probabilities are never stored:
// the forward keeps one log-sum-exp per row and the backward recomputes softmax from it.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// logits (N,V), targets (N) -> loss (1), lse (N). loss = mean over the rows whose target is not
// ignore_index of lse[n] - logits[n, targets[n]]; 0 when every row is ignored. lse[n] =
// log(sum(exp(logits[n]))), 0 for ignored rows (not computed). Targets are trusted (the front
// checks them): in [0, V) or ignore_index. label_smoothing e in [0, 1] (PyTorch's definition): each
// row's loss is (1 - e) * (lse - logit[target]) + e * mean over classes of (lse - logit).
void crossentropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int64_t N, int64_t V,
                          int32_t ignore_index, float label_smoothing = 0.0f);

// dlogits (N,V) += (softmax(logits[n]) - (1 - e) onehot(targets[n]) - e / V) * dloss / count, from
// dloss (1), logits (N,V), targets (N) and the forward's lse (N); count = rows not ignored, e =
// label_smoothing. Ignored rows get nothing.
void crossentropy_backward(float* dlogits, const float* dloss, const float* logits, const int32_t* targets,
                           const float* lse, int64_t N, int64_t V, int32_t ignore_index, float label_smoothing = 0.0f);

// out (n) = exp(in (n)), vectorised, within 2 ulp of the correctly rounded result for results in
// the normal range; overflows to inf above 88.72, goes through the subnormals to 0 below -87.3,
// and keeps NaN. The kernels above use it; it is declared here so that its accuracy can be tested.
void vector_exp(float* out, const float* in, int64_t n);

TG_CPU_ISA_END
}  // namespace tg::cpu
