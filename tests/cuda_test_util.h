// Helpers for the CUDA tests: skipping without a GPU, poisoned outputs, random inputs in every
// dtype, and the two measures the tolerances are stated in: the element-wise bound and the
// norm-wise relative error.
//
// The pattern of a kernel test: draw inputs on the CPU in f32, round them to the dtype under test
// (so the CPU reference and the GPU see the very same values), run the CPU kernel in f32 on the
// rounded values as the reference, run the CUDA kernel into outputs poisoned with NaN, and check
// every element with EXPECT_TRUE(elementwise_close(out, ref, tol)) against a bound derived from
// the dtype's unit roundoff and the op's reduction length (f32_tolerance, or a bound the test
// derives itself). A norm-wise rel_error() may sit beside it where the average error says more
// than the worst element (a tighter bound on accumulated error); alone it lets one wrong element
// among 100,000 through.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
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

// ---- element-wise bounds ------------------------------------------------------------------

// |out[i] - ref[i]| <= atol + rtol * |ref[i]| for every element i.
struct Tolerance {
  double atol = 0, rtol = 0;
};

// Half the spacing of the dtype's subnormals (f32 2^-150, bf16 2^-134, f16 2^-25): a value rounded
// near zero is off by up to this much, which no fraction of the value covers.
inline double subnormal_half_spacing(DType dtype) {
  switch (dtype) {
    case DType::BF16: return std::ldexp(1.0, -134);
    case DType::F16: return std::ldexp(1.0, -25);
    default: return std::ldexp(1.0, -150);
  }
}

// The bound for an element that both devices compute in f32 from identical inputs, and that the GPU
// then stores in `dtype` (one rounding, R = unit_roundoff(dtype); none for f32):
//   f32_ulps  how many f32 unit roundoffs (u = 2^-24) of the result the two f32 computations may
//             differ by: operations reordered or fused into an FMA, library exp/tanh (each call
//             site says which);
//   length    the number of terms summed into the element (1 for element-wise ops). Each side's
//             f32 sum of n terms, in any order, is within (n - 1) u sum |terms| of the exact sum
//             (first order), so the two sides differ by up to 2 (n - 1) u sum |terms|;
//   sum_abs   an upper bound of sum |terms| for any element (the test measures or states it):
//             a sum can cancel to near zero, where no relative bound holds, so that part is absolute.
// Then |v - ref| <= d = f32_ulps u |ref| + 2 (n - 1) u sum_abs for the GPU's f32 value v, and its
// rounding adds R |v| <= R (|ref| + d), plus the subnormal half-spacing near zero:
//   rtol = (R + f32_ulps u)(1 + R),  atol = 2 (n - 1) u sum_abs (1 + R) + subnormal_half_spacing.
// (R is 0 for an f32 output.)
inline Tolerance f32_tolerance(DType dtype, double f32_ulps, int64_t length = 1, double sum_abs = 0) {
  const double u = std::ldexp(1.0, -24);
  const double R = dtype == DType::F32 ? 0.0 : unit_roundoff(dtype);
  Tolerance t;
  t.rtol = (R + f32_ulps * u) * (1 + R);
  t.atol = 2.0 * static_cast<double>(length > 1 ? length - 1 : 0) * u * sum_abs * (1 + R) + subnormal_half_spacing(dtype);
  return t;
}

// The verdict of an element-wise comparison: how many elements broke their bound, and the worst
// one (the largest |out - ref| / bound; NaN counts as infinitely far), with both values and its
// bound. An element passes when out == ref (equal infinities included) or, for a finite ref,
// |out - ref| <= bound.
struct ElementwiseReport {
  int64_t count = 0;       // elements compared
  int64_t violations = 0;  // elements outside their bound (a size mismatch counts every element)
  int64_t worst = -1;      // index of the worst element, -1 when there are none
  double out = 0, ref = 0, bound = 0;
  bool ok() const { return violations == 0; }
};

// out against ref with element i's bound bound_of(i, ref[i]).
template <class BoundOf>
ElementwiseReport compare_elementwise_with(const std::vector<float>& out, const std::vector<float>& ref,
                                           BoundOf bound_of) {
  ElementwiseReport r;
  r.count = static_cast<int64_t>(out.size());
  if (out.size() != ref.size()) {
    r.violations = static_cast<int64_t>(std::max(out.size(), ref.size()));
    return r;
  }
  double worst_ratio = -1;
  for (size_t i = 0; i < out.size(); i++) {
    const double a = out[i], b = ref[i];
    const double bound = bound_of(i, b);
    const double diff = std::fabs(a - b);
    // An infinite ref is matched only by itself (its relative bound would be infinite too).
    const bool pass = a == b || (std::isfinite(b) && diff <= bound);
    // NaN anywhere makes diff NaN: rank it, and any other miss without a finite ratio, past every
    // finite ratio.
    const double ratio = a == b ? 0.0 : (std::isfinite(b) && std::isfinite(diff) && bound > 0 ? diff / bound : INFINITY);
    if (!pass) r.violations++;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      r.worst = static_cast<int64_t>(i);
      r.out = a;
      r.ref = b;
      r.bound = bound;
    }
  }
  return r;
}

inline ElementwiseReport compare_elementwise(const std::vector<float>& out, const std::vector<float>& ref,
                                             Tolerance tol) {
  return compare_elementwise_with(out, ref, [&](size_t, double b) { return tol.atol + tol.rtol * std::fabs(b); });
}

// The same with a bound per element (bounds.size() == ref.size()), for ops whose error depends on
// each element's own terms (a condition number, the magnitude of what was summed into it).
inline ElementwiseReport compare_elementwise(const std::vector<float>& out, const std::vector<float>& ref,
                                             const std::vector<double>& bounds) {
  if (bounds.size() != ref.size()) {
    ElementwiseReport r;
    r.count = static_cast<int64_t>(out.size());
    r.violations = static_cast<int64_t>(std::max(out.size(), ref.size()));
    return r;
  }
  return compare_elementwise_with(out, ref, [&](size_t i, double) { return bounds[i]; });
}

inline ::testing::AssertionResult elementwise_verdict(const ElementwiseReport& r, const std::string& rule) {
  if (r.ok()) return ::testing::AssertionSuccess();
  std::ostringstream m;
  m.precision(9);
  m << r.violations << " of " << r.count << " elements outside " << rule;
  if (r.worst >= 0)
    m << "; worst at index " << r.worst << ": out " << r.out << ", ref " << r.ref << ", |out - ref| "
      << std::fabs(r.out - r.ref) << ", bound " << r.bound;
  else
    m << " (sizes differ)";
  return ::testing::AssertionFailure() << m.str();
}

// For EXPECT_TRUE(test::elementwise_close(out, ref, tol)) << what: out (any device and dtype)
// against ref element by element; the failure message gives the count of violations, the worst
// element's index, both values and its bound.
inline ::testing::AssertionResult elementwise_close(const Tensor& out, const Tensor& ref, Tolerance tol) {
  if (out.shape() != ref.shape())
    return ::testing::AssertionFailure() << "shapes differ: out " << shape_str(out.shape()) << ", ref "
                                         << shape_str(ref.shape());
  std::ostringstream rule;
  rule << "|out - ref| <= " << tol.atol << " + " << tol.rtol << " |ref|";
  return elementwise_verdict(compare_elementwise(out.to_vector(), ref.to_vector(), tol), rule.str());
}

// The same with a bound per element, in ref's row-major order.
inline ::testing::AssertionResult elementwise_close(const Tensor& out, const Tensor& ref,
                                                    const std::vector<double>& bounds) {
  if (out.shape() != ref.shape())
    return ::testing::AssertionFailure() << "shapes differ: out " << shape_str(out.shape()) << ", ref "
                                         << shape_str(ref.shape());
  return elementwise_verdict(compare_elementwise(out.to_vector(), ref.to_vector(), bounds), "their bounds");
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
