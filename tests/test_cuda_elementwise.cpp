// CUDA elementwise arithmetic (broadcasting forward, the dense / rows / general backward, the
// tensor-scalar ops) and accumulate, each against the CPU kernel on the same rounded inputs, in f32,
// bf16 and f16, with poisoned outputs. Plus the CPU-side contract: half precision on the CPU is a
// clear error naming the op and the dtype.
//
// Tolerances are relative errors. One round-to-nearest into a format with p significand bits moves
// a value by at most u = 2^-p of itself (f32 p = 24, bf16 p = 8, f16 p = 11), so k roundings of the
// GPU's result stay within k u of the CPU's f32 value. Each bound below holds for every element
// (one operation per element, or sums of terms of one sign), so each is checked element by element
// (test::elementwise_close, via per_element) as well as in norm (test::rel_error).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/elementwise.h"
#include "ops/accumulate.h"
#include "ops/elementwise.h"
#include "tensor/tensor.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

double roundoff(DType dtype) { return test::unit_roundoff(dtype); }

// A relative bound that holds per element, with the subnormal half-spacing of up to four roundings
// as its floor: near zero a rounding is off by half the spacing, not by a fraction of the value.
test::Tolerance per_element(DType dtype, double relative) {
  return {4 * test::subnormal_half_spacing(dtype), relative};
}

// Same-shape and broadcast elementwise results: the GPU does the CPU's f32 operation on the same
// inputs and rounds once (u). The f32 slack of 1e-6 (16 f32 ulps) covers FMA contraction, which may
// fuse the backward kernels' multiply-adds differently on the two compilers.
double elementwise_tolerance(DType dtype) { return roundoff(dtype) + 1e-6; }

// Column sums of positive terms (see positive(): no cancellation, so these are worst cases): the
// GPU adds at most rows_per_chunk / 8 + 8 <= 136 numbers in f32 in sequence (ops/cuda/reduce.cuh;
// the partials then in double), the CPU's rows backward 64 in float before its double total, so
// the two differ by at most (136 + 64 + 2) u_f32 ~ 1.2e-5 of the sum; 2e-5 holds it. Then one
// rounding to the dtype.
double column_sum_tolerance(DType dtype) { return roundoff(dtype) + 2e-5; }

// Values in [0.5, 1.5), rounded to `dtype`: positive (sums do not cancel, so the bounds above are
// worst cases, not averages) and away from 0 (quotients stay within f16's range).
Tensor positive(const Shape& shape, Generator& gen, DType dtype, float sign = 1.0f) {
  Tensor x = Tensor::rand(shape, &gen);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); i++) p[i] = sign * (p[i] + 0.5f);
  return x.to(dtype).to(DType::F32);
}

// Standard normal values pushed away from 0 (|b| >= min_abs), for divisors.
Tensor divisors(const Shape& shape, Generator& gen, DType dtype, float min_abs = 0.5f) {
  Tensor x = Tensor::randn(shape, &gen);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); i++) p[i] = p[i] >= 0 ? p[i] + min_abs : p[i] - min_abs;
  return x.to(dtype).to(DType::F32);
}

std::string describe(const char* op, DType dtype, const Shape& a, const Shape& b) {
  return std::string(op) + " " + dtype_name(dtype) + " " + shape_str(a) + " with " + shape_str(b);
}

struct BinaryCase {
  const char* name;
  void (*forward)(Tensor&, const Tensor&, const Tensor&);
  std::function<void(Tensor&, Tensor&, const Tensor&, const Tensor&, const Tensor&)> backward;
  float db_sign;  // the sign of db's term for positive inputs: a start of that sign avoids cancellation
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> cases = {
      {"add", ops::add_forward,
       [](Tensor& da, Tensor& db, const Tensor& dout, const Tensor&, const Tensor&) { ops::add_backward(da, db, dout); },
       1.0f},
      {"sub", ops::sub_forward,
       [](Tensor& da, Tensor& db, const Tensor& dout, const Tensor&, const Tensor&) { ops::sub_backward(da, db, dout); },
       -1.0f},
      {"mul", ops::mul_forward, ops::mul_backward, 1.0f},
      {"div", ops::div_forward, ops::div_backward, -1.0f},
  };
  return cases;
}

// Forward shape pairs: same shape at awkward sizes, (rows, C) with a row of C on either side (C a
// multiple of every pack size, so the 16-byte path runs, and C = 257, which forbids it), a scalar on
// either side, two-sided 3-D broadcasting and a column broadcast (the strided walk).
const std::vector<std::pair<Shape, Shape>>& forward_shapes() {
  static const std::vector<std::pair<Shape, Shape>> pairs = {
      {{1}, {1}},         {{7}, {7}},       {{1000}, {1000}},  {{100003}, {100003}}, {{33, 257}, {257}},
      {{257}, {33, 257}}, {{1000, 16}, {16}}, {{16}, {1000, 16}}, {{7, 9}, {}},        {{}, {7, 9}},
      {{3, 1, 5}, {1, 4, 5}}, {{33, 1}, {33, 257}}, {{2, 3, 4}, {3, 1}}, {{1, 1}, {1}},
  };
  return pairs;
}

Shape broadcast(const Shape& a, const Shape& b) { return ops::broadcast_shape("test", a, b); }

}  // namespace

// ---- CPU-runnable: the dtype contract -------------------------------------------------------

// Half precision runs on the CPU too (tests/test_half_ops.cpp); mixed dtypes are refused by name.
TEST(CudaElementwise, MixedDtypesAreAClearError) {
  Tensor a = Tensor::ones({3}, DType::BF16), f = Tensor::ones({3});
  EXPECT_ERROR_MENTIONS(mul(f, Tensor::ones({3}, DType::F16)), "mul", "f16", "f32");
  EXPECT_ERROR_MENTIONS(add(a, f), "add", "bf16", "f32");
  Tensor grad = Tensor::zeros({3}), none;
  EXPECT_ERROR_MENTIONS(ops::add_backward(grad, none, a), "add_backward", "bf16", "f32");
  Tensor dst = Tensor::zeros({3}, DType::BF16);
  EXPECT_ERROR_MENTIONS(ops::accumulate(dst, f), "accumulate", "bf16", "f32");
}

TEST(CudaElementwise, AccumulateRejectsAnOverlappingDestination) {
  Tensor dst = Tensor::zeros({1, 4}).expand({3, 4});  // three rows sharing one row of storage
  EXPECT_ERROR_MENTIONS(ops::accumulate(dst, Tensor::ones({3, 4})), "accumulate", "dst", "(3, 4)", "stride 0");
}

// ---- GPU against CPU ------------------------------------------------------------------------

TEST(CudaElementwise, BroadcastForwardMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(1);
  for (DType dtype : test::cuda_float_dtypes())
    for (const BinaryCase& op : binary_cases())
      for (const auto& [sa, sb] : forward_shapes()) {
        Tensor a = test::rounded_randn(sa, gen, dtype), b = divisors(sb, gen, dtype);
        Tensor ref = Tensor::empty(broadcast(sa, sb));
        op.forward(ref, a, b);
        Tensor out = test::poisoned(ref.shape(), dtype);
        op.forward(out, test::to_device(a, dtype), test::to_device(b, dtype));
        EXPECT_LT(test::rel_error(out, ref), elementwise_tolerance(dtype)) << describe(op.name, dtype, sa, sb);
        EXPECT_TRUE(test::elementwise_close(out, ref, per_element(dtype, elementwise_tolerance(dtype)))) << describe(op.name, dtype, sa, sb);
      }
}

// Views: a transposed operand (strided walk), and operands and output one element past an aligned
// start (the vector path's alignment check must send them to the element path).
TEST(CudaElementwise, ForwardOnStridedAndMisalignedViews) {
  TG_REQUIRE_GPU();
  Generator gen(2);
  for (DType dtype : test::cuda_float_dtypes())
    for (const BinaryCase& op : binary_cases()) {
      Tensor base = test::rounded_randn({257, 33}, gen, dtype), row = divisors({257}, gen, dtype);
      Tensor ref = Tensor::empty({33, 257});
      op.forward(ref, base.transpose(0, 1), row);
      Tensor out = test::poisoned({33, 257}, dtype);
      op.forward(out, test::to_device(base, dtype).transpose(0, 1), test::to_device(row, dtype));
      EXPECT_LT(test::rel_error(out, ref), elementwise_tolerance(dtype)) << op.name << " transposed " << dtype_name(dtype);
      EXPECT_TRUE(test::elementwise_close(out, ref, per_element(dtype, elementwise_tolerance(dtype)))) << op.name << " transposed " << dtype_name(dtype);

      Tensor a = test::rounded_randn({1001}, gen, dtype), b = divisors({1002}, gen, dtype);
      Tensor ref2 = Tensor::empty({1000});
      op.forward(ref2, a.slice(0, 1, 1001), b.slice(0, 2, 1002));
      Tensor out_base = test::poisoned({1001}, dtype);
      Tensor out2 = out_base.slice(0, 1, 1001);
      op.forward(out2, test::to_device(a, dtype).slice(0, 1, 1001), test::to_device(b, dtype).slice(0, 2, 1002));
      EXPECT_LT(test::rel_error(out2, ref2), elementwise_tolerance(dtype)) << op.name << " misaligned " << dtype_name(dtype);
      EXPECT_TRUE(test::elementwise_close(out2, ref2, per_element(dtype, elementwise_tolerance(dtype)))) << op.name << " misaligned " << dtype_name(dtype);
      EXPECT_TRUE(std::isnan(out_base.to_vector()[0])) << "wrote outside the output view";
    }
}

TEST(CudaElementwise, MoreThanEightUnmergeableDimensionsIsAnError) {
  TG_REQUIRE_GPU();
  Shape shape(9, 2);
  std::vector<int64_t> reverse = {8, 7, 6, 5, 4, 3, 2, 1, 0};
  Tensor a = Tensor::ones(shape, DType::F32, test::gpu()).permute(reverse), b = Tensor::ones(shape, DType::F32, test::gpu());
  Tensor out = Tensor::empty(shape, DType::F32, test::gpu());
  EXPECT_ERROR_MENTIONS(ops::add_forward(out, a, b), "add", "8 dimensions");
}

// The three backward layouts (same shape, rows, general broadcasting), each with both gradients and
// with one of them absent. Gradient buffers start with values of the sign their term adds, so the
// check covers += and the column sums never cancel.
TEST(CudaElementwise, BackwardMatchesCpu) {
  TG_REQUIRE_GPU();
  struct Layout {
    Shape a, b;
    // Composed from the forward kernels, sum_to and scale_backward (several rounded passes) rather
    // than fused; mul fuses a row on the left as well.
    bool general, general_unless_mul;
  };
  const std::vector<Layout> layouts = {
      {{1}, {1}, false, false},           {{7}, {7}, false, false},          {{1000}, {1000}, false, false},
      {{100003}, {100003}, false, false}, {{1, 7}, {7}, false, false},       {{33, 257}, {257}, false, false},
      {{1000, 16}, {16}, false, false},   {{1000, 7}, {1, 7}, false, false}, {{4096, 96}, {96}, false, false},
      {{3, 100003}, {100003}, false, false}, {{4, 33, 7}, {33, 7}, false, false},  // fused on CUDA only
      {{257}, {33, 257}, false, true},       {{3, 1, 5}, {1, 4, 5}, true, true},
  };
  Generator gen(3);
  for (DType dtype : test::cuda_float_dtypes())
    for (const BinaryCase& op : binary_cases())
      for (const Layout& layout : layouts)
        for (int mode = 0; mode < 3; mode++) {  // 0: da and db, 1: da only, 2: db only
          Shape out_shape = broadcast(layout.a, layout.b);
          Tensor dout = positive(out_shape, gen, dtype), a = positive(layout.a, gen, dtype), b = positive(layout.b, gen, dtype);
          Tensor da0 = positive(layout.a, gen, dtype), db0 = positive(layout.b, gen, dtype, op.db_sign);
          Tensor da_ref = mode == 2 ? Tensor() : da0.clone(), db_ref = mode == 1 ? Tensor() : db0.clone();
          op.backward(da_ref, db_ref, dout, a, b);
          Tensor da = mode == 2 ? Tensor() : test::to_device(da0, dtype);
          Tensor db = mode == 1 ? Tensor() : test::to_device(db0, dtype);
          op.backward(da, db, test::to_device(dout, dtype), test::to_device(a, dtype), test::to_device(b, dtype));
          // A reduced gradient carries the column-sum bound, the others the elementwise one; each with
          // one rounding per rounded pass in half precision. Fused: one. General (no cancellation: all
          // terms of one gradient share a sign): the term's passes (add/sub none, mul one, div's da
          // one, div's db three: dout * a, / b, / b), the sum when reduced, and the final add.
          bool reduced_a = shape_numel(layout.a) != shape_numel(out_shape);
          bool reduced_b = shape_numel(layout.b) != shape_numel(out_shape);
          bool general = layout.general || (layout.general_unless_mul && std::string(op.name) != "mul");
          auto roundings = [&](bool is_b, bool reduced) {
            if (!general) return 1;
            int term = std::string(op.name) == "mul" ? 1 : std::string(op.name) == "div" ? (is_b ? 3 : 1) : 0;
            return term + (reduced ? 1 : 0) + 1;
          };
          double tol_a = (reduced_a ? column_sum_tolerance(dtype) : elementwise_tolerance(dtype)) +
                         (roundings(false, reduced_a) - 1) * roundoff(dtype);
          double tol_b = (reduced_b ? column_sum_tolerance(dtype) : elementwise_tolerance(dtype)) +
                         (roundings(true, reduced_b) - 1) * roundoff(dtype);
          std::string what = describe(op.name, dtype, layout.a, layout.b) + " mode " + std::to_string(mode);
          if (da.defined()) {
            EXPECT_LT(test::rel_error(da, da_ref), tol_a) << what << " da";
            EXPECT_TRUE(test::elementwise_close(da, da_ref, per_element(dtype, tol_a))) << what << " da";
          }
          if (db.defined()) {
            EXPECT_LT(test::rel_error(db, db_ref), tol_b) << what << " db";
            EXPECT_TRUE(test::elementwise_close(db, db_ref, per_element(dtype, tol_b))) << what << " db";
          }
        }
}

// The rows backward's column sum splits the rows over blocks and adds the partials in a fixed order:
// the same inputs give the same bits.
TEST(CudaElementwise, RowsBackwardIsDeterministic) {
  TG_REQUIRE_GPU();
  Generator gen(4);
  for (DType dtype : test::cuda_float_dtypes()) {
    Tensor dout = test::to_device(test::rounded_randn({4099, 96}, gen, dtype), dtype);
    Tensor a = test::to_device(test::rounded_randn({4099, 96}, gen, dtype), dtype);
    Tensor b = test::to_device(test::rounded_randn({96}, gen, dtype), dtype);
    std::vector<float> first;
    for (int run = 0; run < 2; run++) {
      Tensor da = Tensor::zeros({4099, 96}, dtype, test::gpu()), db = Tensor::zeros({96}, dtype, test::gpu());
      ops::mul_backward(da, db, dout, a, b);
      std::vector<float> got = db.to_vector();
      if (run == 0) {
        first = got;
      } else {
        EXPECT_EQ(std::memcmp(first.data(), got.data(), got.size() * sizeof(float)), 0) << dtype_name(dtype);
      }
    }
  }
}

TEST(CudaElementwise, ScalarOpsMatchCpu) {
  TG_REQUIRE_GPU();
  Generator gen(5);
  for (DType dtype : test::cuda_float_dtypes())
    for (int64_t n : {1, 7, 1000, 100003}) {
      Tensor x = test::rounded_randn({n}, gen, dtype), g0 = test::rounded_randn({n}, gen, dtype);
      Tensor xd = test::to_device(x, dtype);
      std::string what = std::string(dtype_name(dtype)) + " n=" + std::to_string(n);

      Tensor ref = Tensor::empty({n}), out = test::poisoned({n}, dtype);
      ops::scale_forward(ref, x, -1.75f);
      ops::scale_forward(out, xd, -1.75f);
      EXPECT_LT(test::rel_error(out, ref), elementwise_tolerance(dtype)) << "scale " << what;
      EXPECT_TRUE(test::elementwise_close(out, ref, per_element(dtype, elementwise_tolerance(dtype)))) << "scale " << what;

      ops::add_scalar_forward(ref, x, 0.3f);
      out = test::poisoned({n}, dtype);
      ops::add_scalar_forward(out, xd, 0.3f);
      EXPECT_LT(test::rel_error(out, ref), elementwise_tolerance(dtype)) << "add_scalar " << what;
      EXPECT_TRUE(test::elementwise_close(out, ref, per_element(dtype, elementwise_tolerance(dtype)))) << "add_scalar " << what;

      Tensor g_ref = g0.clone(), g = test::to_device(g0, dtype);
      ops::scale_backward(g_ref, x, 0.7f);
      ops::scale_backward(g, xd, 0.7f);
      EXPECT_LT(test::rel_error(g, g_ref), elementwise_tolerance(dtype)) << "scale_backward " << what;
      // g0 + 0.7 x may be one FMA on one side and two roundings on the other: they differ by up to an
      // f32 ulp of each term (2 u (|g0| + 0.7 |x|), u = 2^-24), not of the sum, which may cancel.
      {
        const double u = std::ldexp(1.0, -24), R = dtype == DType::F32 ? 0.0 : roundoff(dtype);
        std::vector<float> gv = g0.to_vector(), xv = x.to_vector(), rv = g_ref.to_vector();
        std::vector<double> bounds(rv.size());
        for (size_t i = 0; i < rv.size(); i++) {
          const double d = 2 * u * (std::fabs(gv[i]) + 0.7 * std::fabs(xv[i]));
          bounds[i] = d + R * (std::fabs(rv[i]) + d) + test::subnormal_half_spacing(dtype);
        }
        EXPECT_TRUE(test::elementwise_close(g, g_ref, bounds)) << "scale_backward " << what;
      }
    }
}

// dst += src for the layouts the view backwards produce: dense (aligned and not), src transposed,
// dst a window of a larger tensor (the rest must stay untouched), src expanded (stride 0).
TEST(CudaElementwise, AccumulateMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(6);
  for (DType dtype : test::cuda_float_dtypes()) {
    auto check = [&](const Tensor& dst0, const std::function<Tensor(const Tensor&)>& dst_view, const Tensor& src,
                     const std::function<Tensor(const Tensor&)>& src_view, const char* what) {
      Tensor ref = dst0.clone(), got = test::to_device(dst0, dtype);
      Tensor ref_view = dst_view(ref), got_view = dst_view(got);
      ops::accumulate(ref_view, src_view(src));
      ops::accumulate(got_view, src_view(test::to_device(src, dtype)));
      EXPECT_LT(test::rel_error(got, ref), elementwise_tolerance(dtype)) << what << " " << dtype_name(dtype);
      EXPECT_TRUE(test::elementwise_close(got, ref, per_element(dtype, elementwise_tolerance(dtype)))) << what << " " << dtype_name(dtype);
    };
    auto same = [](const Tensor& t) { return t; };
    check(test::rounded_randn({100003}, gen, dtype), same, test::rounded_randn({100003}, gen, dtype), same, "dense");
    check(test::rounded_randn({1}, gen, dtype), same, test::rounded_randn({1}, gen, dtype), same, "one element");
    check(test::rounded_randn({1001}, gen, dtype), [](const Tensor& t) { return t.slice(0, 1, 1001); },
          test::rounded_randn({1003}, gen, dtype), [](const Tensor& t) { return t.slice(0, 3, 1003); }, "misaligned");
    check(test::rounded_randn({33, 257}, gen, dtype), same, test::rounded_randn({257, 33}, gen, dtype),
          [](const Tensor& t) { return t.transpose(0, 1); }, "transposed src");
    check(test::rounded_randn({40, 300}, gen, dtype), [](const Tensor& t) { return t.slice(0, 3, 36).slice(1, 5, 262); },
          test::rounded_randn({33, 257}, gen, dtype), same, "window dst");
    check(test::rounded_randn({33, 7}, gen, dtype), same, test::rounded_randn({1, 7}, gen, dtype),
          [](const Tensor& t) { return t.expand({33, 7}); }, "expanded src");
    check(test::rounded_randn({3, 4, 5}, gen, dtype), [](const Tensor& t) { return t.permute({2, 0, 1}); },
          test::rounded_randn({5, 3, 4}, gen, dtype), same, "permuted dst");
  }
}

// Differentiable calls on GPU tensors: outputs and gradients keep the input's dtype and device, and
// the values follow the CPU. y = a * b + a / b runs the same-shape fused backward of add, mul and
// div. With |b| >= 2 nothing cancels: y = a (b + 1/b) sums two same-signed rounded terms and rounds
// (within 2u of it), da = g (b + 1/b) likewise, db = g a (1 - 1/b^2) with |1 - 1/b^2| >= 3/4, so its
// first rounded term g a is at most 4/3 of the result (within (4/3 + 1) u). 3u bounds all three.
TEST(CudaElementwise, AutogradOnTheGpuKeepsDtypeAndMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(7);
  for (DType dtype : test::cuda_float_dtypes()) {
    Tensor a0 = test::rounded_randn({5, 33}, gen, dtype), b0 = divisors({5, 33}, gen, dtype, 2.0f);
    Tensor g0 = test::rounded_randn({5, 33}, gen, dtype);
    Tensor a = a0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
    Tensor y_ref = a * b + a / b;
    backward(y_ref, g0);
    Tensor ad = test::to_device(a0, dtype).requires_grad_(true), bd = test::to_device(b0, dtype).requires_grad_(true);
    Tensor y = ad * bd + ad / bd;
    EXPECT_EQ(y.dtype(), dtype);
    EXPECT_TRUE(y.device().is_cuda());
    backward(y, test::to_device(g0, dtype));
    ASSERT_TRUE(ad.grad().defined() && bd.grad().defined());
    EXPECT_EQ(ad.grad().dtype(), dtype);
    EXPECT_EQ(bd.grad().dtype(), dtype);
    EXPECT_LT(test::rel_error(y, y_ref), 3 * roundoff(dtype) + 1e-6) << dtype_name(dtype);
    EXPECT_TRUE(test::elementwise_close(y, y_ref, per_element(dtype, 3 * roundoff(dtype) + 1e-6))) << dtype_name(dtype);
    EXPECT_LT(test::rel_error(ad.grad(), a.grad()), 3 * roundoff(dtype) + 1e-6) << dtype_name(dtype);
    EXPECT_TRUE(test::elementwise_close(ad.grad(), a.grad(), per_element(dtype, 3 * roundoff(dtype) + 1e-6))) << dtype_name(dtype);
    EXPECT_LT(test::rel_error(bd.grad(), b.grad()), 3 * roundoff(dtype) + 1e-6) << dtype_name(dtype);
    EXPECT_TRUE(test::elementwise_close(bd.grad(), b.grad(), per_element(dtype, 3 * roundoff(dtype) + 1e-6))) << dtype_name(dtype);

    // Scalars: x / s multiplies by 1 / s in f32 for half dtypes (one rounding from x * (1/s), which
    // is within an f32 ulp of x / s); s / x divides by x with s rounded to the dtype (exact here).
    Tensor q = ad / 3.0f, r = 2.0f / bd;
    EXPECT_EQ(q.dtype(), dtype);
    EXPECT_EQ(r.dtype(), dtype);
    EXPECT_LT(test::rel_error(q, a0 / 3.0f), roundoff(dtype) + 1e-6) << dtype_name(dtype);
    EXPECT_TRUE(test::elementwise_close(q, a0 / 3.0f, per_element(dtype, roundoff(dtype) + 1e-6))) << dtype_name(dtype);
    EXPECT_LT(test::rel_error(r, 2.0f / b0), roundoff(dtype) + 1e-6) << dtype_name(dtype);
    EXPECT_TRUE(test::elementwise_close(r, 2.0f / b0, per_element(dtype, roundoff(dtype) + 1e-6))) << dtype_name(dtype);
  }
}
