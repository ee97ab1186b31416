// The arithmetic the CPU and CUDA optimizer kernels share, written once so that both produce the
// same bits: AdamW's per-step factors (host only), the split of a bf16 master into its parameter
// and 16 low bits, and the counter-based stochastic rounding of f32 master weights into bf16 / f16
// parameters (host and device).
//
// Plain C++: g++ compiles it for the CPU kernels and the fronts; under nvcc the rounding functions
// are also device functions. Every operation below is exact (integer arithmetic, or f32 operations
// whose results are representable), so the host and the device agree bit for bit.
#pragma once
#include <cmath>
#include <cstdint>

#include "tensor/host_device.h"

namespace tg::optim_math {

// ---- AdamW ---------------------------------------------------------------------------------

// The per-parameter, per-step scalars of PyTorch's AdamW, formed in double and rounded once to f32
// as PyTorch does with its Python-float hyperparameters:
//   decay = 1 - lr*weight_decay,  neg_step_size = -lr / (1 - beta1^step),
//   bias_correction2_sqrt = sqrt(1 - beta2^step).
struct AdamWFactors {
  float decay, neg_step_size, bias_correction2_sqrt;
};

inline AdamWFactors adamw_factors(float lr, float beta1, float beta2, float weight_decay, int64_t step) {
  const double t = static_cast<double>(step);
  AdamWFactors f;
  f.decay = static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay);
  f.neg_step_size = static_cast<float>(-(lr / (1.0 - std::pow(static_cast<double>(beta1), t))));
  f.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(beta2), t)));
  return f;
}

// ---- bf16 master weights: the parameter plus the 16 bits its rounding dropped ----------------
// A bf16 parameter rounded to nearest from its f32 master holds the master's top 16 bits, up to a
// carry: so the master is stored as the parameter itself plus 16 more bits, 2 bytes per element
// instead of a 4-byte f32 copy, and recovered exactly. With y = bits(x) + 0x7fff (as integers),
//   parameter = y >> 16                x rounded to the nearest bf16, ties toward zero
//   low       = (y & 0xffff) ^ 0x7fff  x's offset from the parameter, so that 0 is no offset
//   x         = ((parameter << 16) | (low ^ 0x7fff)) - 0x7fff
// The ties must go one way: the masters that round to one bf16 value then number 2^16 (offsets
// -0x7fff to +0x8000, in f32 bit patterns), and 16 bits name each; round-half-to-even would give
// an even value 2^16 + 1 of them. Exact for every non-NaN pattern; the carry never reaches the sign
// (the largest magnitude, infinity's 0x7f800000, becomes 0x7f807fff). Zeroed low bits are a master
// equal to its parameter, the state a first update starts from. A NaN master becomes a quiet NaN
// parameter, as f32_to_bf16_bits makes it, and decodes as a NaN. A parameter written outside the
// optimizer keeps the old master's offset (within half a bf16 spacing of the new value), except
// that a ±0 it could not have been rounded from decodes as that zero rather than as a NaN.
TG_HOST_DEVICE inline uint16_t master_bf16(float x) {
  const uint32_t bits = float_bits(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  return static_cast<uint16_t>((bits + 0x7fffu) >> 16);
}

TG_HOST_DEVICE inline uint16_t master_low_bits(float x) {
  return static_cast<uint16_t>(((float_bits(x) + 0x7fffu) & 0xffffu) ^ 0x7fffu);
}

TG_HOST_DEVICE inline float join_master(uint16_t param, uint16_t low) {
  const uint32_t biased = static_cast<uint32_t>(low ^ 0x7fffu);
  // A ±0 parameter is rounded from biased offsets 0x7fff and up only; below, it was written as zero.
  if ((param & 0x7fffu) == 0 && biased < 0x7fffu) return bits_float(static_cast<uint32_t>(param) << 16);
  return bits_float(((static_cast<uint32_t>(param) << 16) | biased) - 0x7fffu);
}

// ---- random bits ---------------------------------------------------------------------------

// SplitMix64's finalizer: a bijection on 64-bit words whose output bits each depend on every input bit.
TG_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;  // SplitMix64's increment

// One key per (seed, step, stream): `stream` tells tensors apart (an optimizer numbers its
// parameters), `step` is the parameter's update count, so a resumed run draws the same bits.
inline uint64_t rounding_key(uint64_t seed, int64_t step, uint64_t stream) {
  return mix64(mix64(mix64(seed) + static_cast<uint64_t>(step) * kGolden) + stream);
}

// 64 random bits for element `index` under `key`: SplitMix64's output at position index + 1 of the
// stream seeded with `key`. Counter-based: any thread computes any element's bits on its own.
TG_HOST_DEVICE inline uint64_t rounding_bits(uint64_t key, int64_t index) {
  return mix64(key + (static_cast<uint64_t>(index) + 1) * kGolden);
}

// ---- stochastic rounding -------------------------------------------------------------------
// x rounds to one of its two neighbours in the target format, away from zero with probability
// (|x| - |lower|) / (|upper| - |lower|), so E[result] = x: the small updates that round-to-nearest
// would drop every time survive on average. Exactly representable values, infinities and NaN
// (as a quiet NaN) come through unchanged. Like round-to-nearest, values past the largest finite
// half may become infinity.

// bf16 keeps the top 16 bits of an f32. Adding 16 uniform random bits to the 16 that are dropped
// carries into the kept part with probability (dropped bits) / 2^16: exactly the rule above, for
// normal and subnormal values alike (their spacing is uniform in the dropped bits). The carry may
// run into the exponent, which is the correct next value; on the magnitude it never reaches the
// sign bit, even from the largest finite f32.
TG_HOST_DEVICE inline uint16_t stochastic_round_bf16(float x, uint64_t random) {
  const uint32_t bits = float_bits(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  return static_cast<uint16_t>((bits + static_cast<uint32_t>(random >> 48)) >> 16);
}

// f16 has 10 mantissa bits and exponents down to -14. From 2^-14 up the same carry trick works on
// the 13 dropped mantissa bits, and the kept bits re-biased (f32 bias 127, f16 bias 15) are the
// f16. Below 2^-14 every f16 is a multiple of 2^-24 (subnormals), so |x| * 2^24 (exact: a power
// of two) is rounded to an integer with a 24-bit uniform draw; its fraction is exact too
// (Sterbenz), so the only bias is the draw's resolution, 2^-24 of a spacing.
TG_HOST_DEVICE inline uint16_t stochastic_round_f16(float x, uint64_t random) {
  const uint32_t bits = float_bits(x);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) return static_cast<uint16_t>(sign | (magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (magnitude >= 0x38800000u) {  // |x| >= 2^-14
    const uint32_t rounded = (magnitude + static_cast<uint32_t>(random >> 51)) & ~0x1fffu;
    if (rounded >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 2^16: past 65504
    return static_cast<uint16_t>(sign | ((rounded >> 13) - (112u << 10)));
  }
  const float scaled = bits_float(magnitude) * 16777216.0f;  // |x| * 2^24 < 2^10
  const float whole = floorf(scaled);
  const float fraction = scaled - whole;
  const float draw = static_cast<float>(static_cast<uint32_t>(random >> 40)) * (1.0f / 16777216.0f);  // [0, 1)
  const uint32_t k = static_cast<uint32_t>(whole) + (draw < fraction ? 1u : 0u);  // <= 1024 = 2^-14, still right
  return static_cast<uint16_t>(sign | k);
}

}  // namespace tg::optim_math
