// What the half-precision CPU op tests share (test_half_ops.cpp, test_half_cnn_ops.cpp): a fixture
// parameterised by the 16-bit dtype that draws inputs already rounded to it, the dtype's unit
// roundoff and subnormal floor, and the exact f32 value of a half tensor.
#pragma once
#include <gtest/gtest.h>

#include <cmath>

#include "ops/elementwise.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace tg::test {

class HalfCpuOpsTest : public ::testing::TestWithParam<DType> {
 protected:
  DType half() const { return GetParam(); }
  // A standard-normal tensor rounded to the half dtype, so both runs see the same values.
  Tensor draw(const Shape& shape, Generator& gen, float scale = 1.0f) const {
    Tensor t = Tensor::randn(shape, &gen);
    ops::scale_forward(t, t, scale);
    return t.to(half());
  }
  Tensor empty_half(const Shape& shape) const { return Tensor::empty(shape, half()); }
};

// One rounding to the dtype: 2^-8 for bf16 (8 significant bits), 2^-11 for f16.
inline double half_unit_roundoff(DType dtype) {
  return dtype == DType::BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
}
// Half the smallest subnormal: bf16 shares f32's exponent range (2^-133), f16's is 2^-24.
inline double half_subnormal(DType dtype) {
  return dtype == DType::BF16 ? std::ldexp(1.0, -134) : std::ldexp(1.0, -25);
}
// The exact f32 value of a half tensor: what the f32 run reads.
inline Tensor widened(const Tensor& t) { return t.to(DType::F32); }

}  // namespace tg::test
