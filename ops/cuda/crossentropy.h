// Fused softmax + cross-entropy on CUDA: launchers for ops/crossentropy.cpp, with the CPU kernel's
// contract (ops/cpu/crossentropy.h). The probabilities are never stored: the forward keeps one
// log-sum-exp per row and the backward recomputes softmax from it. Targets are trusted: the front
// checks them on the host (in [0, V) or ignore_index) before calling.
//
// One block per row, 16-byte vector loads where V and the pointers allow; the row's max and
// sum of exps in one pass (online: a thread's running sum is rescaled when its max grows), in f32.
// exp is __expf (ex2.approx of x*log2(e)), documented within 2 + floor(1.173 |x|) ulp: for the
// arguments that matter (x = logit - max in [-20, 0]; smaller terms vanish against the row's max
// term, which is 1) at most 25 ulp, a relative 3e-6, where the CPU's polynomial is within 2 ulp.
//
// Every launcher is asynchronous on cuda::stream(); nothing here synchronizes with the host.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// logits (N,V) `dtype`, targets (N) i32 -> loss (1) f32 = mean over the rows whose target is not
// ignore_index of lse[n] - logits[n, targets[n]] (0 when every row is ignored); lse (N) f32, 0 for
// ignored rows. row_loss (N) f32 is scratch: each row's loss, summed by a second kernel in row order
// (in double, as the CPU does), so the mean is deterministic.
// label_smoothing e in [0, 1]: each row's loss is (1 - e) (lse - x[target]) + e (lse - mean(x)), as
// on the CPU (e = 0: the plain loss, computed exactly as without the argument).
void crossentropy_forward(DType dtype, float* loss, float* lse, float* row_loss, const void* logits,
                          const int32_t* targets, int64_t N, int64_t V, int32_t ignore_index,
                          float label_smoothing = 0.0f);

// dloss (1) f32, logits (N,V) `dtype`, targets (N) i32, lse (N) f32 -> dlogits (N,V) `dtype`:
//   accumulate = true:  dlogits += (softmax(logits[n]) - onehot(targets[n])) * dloss / count; ignored
//                       rows untouched. dlogits must not overlap logits. (The gradient convention.)
//   accumulate = false: dlogits = the same, ignored rows (and every row when all are ignored) = 0.
//                       dlogits may be logits itself (in place, saving the N x V gradient buffer):
//                       each element is read and then written by the same thread, nothing else
//                       reads it.
// With label_smoothing e the gradient is (softmax - (1 - e) onehot - e / V) * dloss / count.
// count = rows not ignored. scale (1) f32 is scratch: dloss / count, formed on the device by a first
// kernel, so dloss never has to come back to the host.
void crossentropy_backward(DType dtype, void* dlogits, const float* dloss, const void* logits, const int32_t* targets,
                           const float* lse, float* scale, int64_t N, int64_t V, int32_t ignore_index,
                           bool accumulate, float label_smoothing = 0.0f);

}  // namespace tg::cuda
