// Helpers for the CUDA tests: skipping without a GPU, poisoned outputs, random inputs in every
// dtype, and the relative error the tolerances are stated in.
//
// The pattern of a kernel test: draw inputs on the CPU in f32, round them to the dtype under test
// (so the CPU reference and the GPU see the very same values), run the CPU kernel in f32 on the
// rounded values as the reference, run the CUDA kernel into outputs poisoned with NaN, and compare
// with rel_error() against a tolerance stated per dtype with its reason.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tensor/tensor.h"

// Skips the test, with the reason in the log, when this build has no CUDA or no GPU is visible.
#define TG_REQUIRE_GPU()                                                                   \
  do {                                                                                     \
    if (!tg::cuda_available()) GTEST_SKIP() << "no CUDA GPU visible (" << tg::cuda_status() << ")"; \
  } while (0)

namespace tg::test {

inline Device gpu() { return Device::cuda(0); }

// The floating dtypes a CUDA kernel must serve.
inline std::vector<DType> cuda_float_dtypes() { return {DType::F32, DType::BF16, DType::F16}; }

// The unit roundoff of a dtype: one round-to-nearest changes a value by at most this fraction of
// it (p significant bits including the implicit one give 2^-p): bf16 2^-8, f16 2^-11, f32 2^-24.
// Tolerances are stated as multiples of it.
inline double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::BF16: return std::ldexp(1.0, -8);
    case DType::F16: return std::ldexp(1.0, -11);
    default: return std::ldexp(1.0, -24);
  }
}

// Standard normal values times `scale`, rounded to `dtype`, returned as an f32 CPU tensor: the
// reference input. to_device(x, dtype) gives the GPU the identical values.
inline Tensor rounded_randn(const Shape& shape, Generator& gen, DType dtype, float scale = 1.0f) {
  Tensor x = Tensor::randn(shape, &gen);
  if (scale != 1.0f) {
    float* p = x.data<float>();
    for (int64_t i = 0; i < x.numel(); i++) p[i] *= scale;
  }
  return x.to(dtype).to(DType::F32);
}

inline Tensor to_device(const Tensor& cpu_f32, DType dtype) { return cpu_f32.to(dtype).to(gpu()); }

// An output buffer on the GPU filled with NaN, so a kernel that skips an element fails the test.
inline Tensor poisoned(const Shape& shape, DType dtype) {
  return Tensor::full(shape, std::numeric_limits<float>::quiet_NaN(), dtype, gpu());
}

// ||out - ref|| / ||ref|| in double over all elements (out may be on any device and dtype); NaN
// anywhere in out gives NaN, which fails every EXPECT_LT.
inline double rel_error(const Tensor& out, const Tensor& ref) {
  std::vector<float> a = out.to_vector(), b = ref.to_vector();
  if (a.size() != b.size()) return std::numeric_limits<double>::quiet_NaN();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Same shape, dtype and bytes, wherever each tensor lives: the check of "bit for bit" claims.
inline bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = a.to(Device::cpu()).contiguous(), cb = b.to(Device::cpu()).contiguous();
  return std::memcmp(ca.data_raw(), cb.data_raw(), ca.nbytes()) == 0;
}

// A fresh leaf that requires grad, holding a copy of t's values.
inline Tensor leaf(const Tensor& t) {
  Tensor p = t.clone();
  p.requires_grad_();
  return p;
}

}  // namespace tg::test
