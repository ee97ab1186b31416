// Fronts for dropout. The mask is a function of a 64-bit key and the element index (see
// ops/cpu/dropout.h); the caller draws the key from a tg::Generator and passes the same key to the
// backward, which therefore applies the forward's mask without it being stored.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace tg::ops {

// out = inp * mask / (1 - p), 0 <= p < 1; contiguous, one dtype (f32 on the CPU; f32, bf16 or f16
// on CUDA, with the same mask for the same key)
void dropout_forward(Tensor& out, const Tensor& inp, float p, uint64_t key);
// dinp += dout * mask / (1 - p), the forward's mask for the same key and p
void dropout_backward(Tensor& dinp, const Tensor& dout, float p, uint64_t key);
// Throws naming `op` and the value unless 0 <= p < 1.
void check_dropout_probability(const char* op, float p);

}  // namespace tg::ops
