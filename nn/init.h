// Parameter initialisers, written in place (no autograd).
//
// Reproducible and parallel: each call takes one 64-bit draw from `gen` as a key, and element
// block b (kInitBlock consecutive elements in row-major order) is drawn from its own
// Generator seeded with a hash of (key, b). So a seed gives the same values on every machine,
// thread count and device, the blocks fill in parallel, and `gen` advances by exactly one draw per
// tensor however large it is.
#pragma once
#include <cstdint>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace tg::init {

constexpr int64_t kInitBlock = int64_t{1} << 16;

// Marsaglia's polar method on pairs of elements: (u, v) uniform in the unit disc, s = u^2 + v^2,
// gives elements 2i and 2i+1 the values u f and v f, f = sqrt(-2 ln(s) / s) (a last odd element of
// a block takes u f alone). One log and one sqrt per two values, no trigonometry: several times
// faster than Generator::normal(), which matters for 100M-parameter models.
void normal_(Tensor& t, float mean, float std, Generator& gen);
void uniform_(Tensor& t, float low, float high, Generator& gen);  // [low, high), Generator::uniform()

}  // namespace tg::init
