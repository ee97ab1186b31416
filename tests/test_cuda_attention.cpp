// Causal self-attention on CUDA against the CPU kernel: forward (out, lse) and backward (dqkv +=)
// for f32, bf16 and f16, head sizes of the tensor-core path (32, 64, 128, bf16/f16 only) and of
// the SIMT path (12, 33, 48, 80, and every head size in f32), T awkward for every tile size (1, 17,
// 100, 257, 1100); determinism; bad input (the CPU-side checks run without a GPU too).
//
// Inputs are rounded to the dtype first, so the CPU reference sees exactly the GPU's values. The
// backward is tested on its own: both sides get the same out (the CPU forward's, rounded to the
// dtype as a GPU forward would store it) and the same f32 lse, so only the backward kernel's own
// roundings show.
//
// Tolerances (relative error, test::rel_error, = ||gpu - cpu|| / ||cpu||):
// - f32: 1e-5. Both sides compute in f32 from the same inputs; they differ by summation order
//   (HS-term dot products, sums over up to T keys) and by exp (the CPU's polynomial vs exp2f, each
//   within 2 ulp): a few 1e-7 relative, 1e-5 leaves room for sums over T = 1100 keys.
// - bf16/f16, SIMT path: one rounding, the store of out (forward) or of dqkv + gradient
//   (backward), each within the unit roundoff 2^-8 (bf16, 8 significant bits) or 2^-11 (f16, 11)
//   of the f32 value;
//   the norm ratio is at most the largest element ratio. Tolerance: that unit + the f32 1e-5.
// - bf16/f16, tensor-core path: two roundings. Forward: P is rounded to the dtype before O += P V
//   (the tensor cores take 16-bit operands), then out on store. Backward: P (for dV) or dS (for
//   dK, dQ) rounded before its product, then the store. Each rounding moves an element by at most
//   one unit, and a weighted sum of rounded terms by at most one unit of the sum of magnitudes;
//   with random signs that is about one unit of the sum itself, so 2 units + the f32 1e-5.
// - lse: f32 on every path (scores from 16-bit inputs are exact products summed in f32, the
//   softmax sum uses unrounded P): 1e-5 for every dtype.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/attention.h"
#include "ops/attention.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;
using tg::test::gpu;
using tg::test::rel_error;
using tg::test::rounded_randn;
using tg::test::to_device;

namespace {

constexpr double kF32Tolerance = 1e-5;

double rounding_unit(DType dtype) {
  switch (dtype) {
    case DType::BF16: return std::ldexp(1.0, -8);
    case DType::F16: return std::ldexp(1.0, -11);
    default: return 0.0;
  }
}

bool tensor_core_path(DType dtype, int64_t hs) { return dtype != DType::F32 && (hs == 32 || hs == 64 || hs == 128); }

// The derived tolerance for out and dqkv (see the top of the file).
double tolerance(DType dtype, int64_t hs) {
  const int roundings = tensor_core_path(dtype, hs) ? 2 : 1;
  return roundings * rounding_unit(dtype) + kF32Tolerance;
}

struct Case {
  int64_t B, T, NH, HS;
  std::string str(DType dtype) const {
    return std::string(dtype_name(dtype)) + " B=" + std::to_string(B) + " T=" + std::to_string(T) +
           " NH=" + std::to_string(NH) + " HS=" + std::to_string(HS);
  }
};

// Every head size on both paths with every awkward T; B*NH of several heads, fewer at T = 1100
// so that the CPU reference stays quick.
std::vector<Case> cases() {
  std::vector<Case> all;
  for (int64_t hs : {12, 33, 48, 80, 32, 64, 128})  // 33: the SIMT dot products' non-float4 loop
    for (int64_t T : {1, 17, 100, 257, 1100}) all.push_back(T > 1000 ? Case{1, T, 2, hs} : Case{2, T, 3, hs});
  // The largest head size the SIMT path takes (shared memory past 48 KB, opted in at launch).
  for (int64_t T : {1, 100, 257}) all.push_back(Case{1, T, 2, 256});
  return all;
}

struct Forward {
  Tensor out, lse;  // CPU f32
};

Forward cpu_forward(const Tensor& qkv, int64_t NH) {
  Tensor out = Tensor::empty({qkv.size(0), qkv.size(1), qkv.size(2) / 3});
  Tensor lse = Tensor::empty({qkv.size(0), NH, qkv.size(1)});
  ops::attention_forward(out, lse, qkv, NH);
  return {out, lse};
}

TEST(CudaAttention, ForwardMatchesCpu) {
  TG_REQUIRE_GPU();
  uint64_t seed = 1;
  for (DType dtype : test::cuda_float_dtypes())
    for (const Case& c : cases()) {
      Generator gen(seed++);
      const int64_t C = c.NH * c.HS;
      Tensor qkv = rounded_randn({c.B, c.T, 3 * C}, gen, dtype);
      Forward ref = cpu_forward(qkv, c.NH);
      Tensor out = test::poisoned({c.B, c.T, C}, dtype), lse = test::poisoned({c.B, c.NH, c.T}, DType::F32);
      ops::attention_forward(out, lse, to_device(qkv, dtype), c.NH);
      EXPECT_LT(rel_error(out, ref.out), tolerance(dtype, c.HS)) << c.str(dtype);
      EXPECT_LT(rel_error(lse, ref.lse), kF32Tolerance) << c.str(dtype);
    }
}

// Runs the CPU and GPU backward on the same qkv, out (rounded to the dtype), lse and dout, into
// buffers that start as `initial` (rounded to the dtype); returns the relative error.
double backward_error(const Case& c, DType dtype, uint64_t seed, bool random_initial) {
  Generator gen(seed);
  const int64_t C = c.NH * c.HS;
  Tensor qkv = rounded_randn({c.B, c.T, 3 * C}, gen, dtype);
  Tensor dout = rounded_randn({c.B, c.T, C}, gen, dtype);
  Forward f = cpu_forward(qkv, c.NH);
  Tensor out = f.out.to(dtype).to(DType::F32);  // what a forward in this dtype stores
  Tensor initial = random_initial ? rounded_randn(qkv.shape(), gen, dtype) : Tensor::zeros(qkv.shape());

  Tensor ref = Tensor::from_vector(initial.to_vector(), initial.shape());  // a private copy to add into
  ops::attention_backward(ref, dout, qkv, out, f.lse, c.NH);

  Tensor dqkv = to_device(initial, dtype);
  ops::attention_backward(dqkv, to_device(dout, dtype), to_device(qkv, dtype), to_device(out, dtype),
                          f.lse.to(gpu()), c.NH);
  return rel_error(dqkv, ref);
}

TEST(CudaAttention, BackwardMatchesCpu) {
  TG_REQUIRE_GPU();
  uint64_t seed = 1000;
  for (DType dtype : test::cuda_float_dtypes())
    for (const Case& c : cases())
      EXPECT_LT(backward_error(c, dtype, seed++, false), tolerance(dtype, c.HS)) << c.str(dtype);
}

// The kernels add into dqkv: a buffer that starts random must end as start + gradient. An
// overwrite would be off by the whole start (relative error ~1).
TEST(CudaAttention, BackwardAddsIntoTheGradientBuffer) {
  TG_REQUIRE_GPU();
  uint64_t seed = 2000;
  for (DType dtype : test::cuda_float_dtypes())
    for (const Case& c : {Case{2, 100, 3, 64}, Case{2, 100, 3, 12}, Case{1, 257, 2, 128}})
      EXPECT_LT(backward_error(c, dtype, seed++, true), tolerance(dtype, c.HS)) << c.str(dtype);
}

// Same inputs -> the same bits: no atomics, fixed summation orders (what makes same seed -> same
// losses hold on the GPU). Both paths, long enough for several tiles in every loop.
TEST(CudaAttention, BackwardIsBitwiseDeterministic) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes())
    for (const Case& c : {Case{2, 300, 3, 64}, Case{2, 300, 2, 48}}) {
      Generator gen(7);
      const int64_t C = c.NH * c.HS;
      Tensor qkv = to_device(rounded_randn({c.B, c.T, 3 * C}, gen, dtype), dtype);
      Tensor dout = to_device(rounded_randn({c.B, c.T, C}, gen, dtype), dtype);
      Tensor out = Tensor::empty({c.B, c.T, C}, dtype, gpu()), lse = Tensor::empty({c.B, c.NH, c.T}, DType::F32, gpu());
      ops::attention_forward(out, lse, qkv, c.NH);
      std::vector<float> first;
      for (int run = 0; run < 2; run++) {
        Tensor dqkv = Tensor::zeros(qkv.shape(), dtype, gpu());
        ops::attention_backward(dqkv, dout, qkv, out, lse, c.NH);
        std::vector<float> values = dqkv.to_vector();
        if (run == 0) first = values;
        else EXPECT_EQ(0, std::memcmp(first.data(), values.data(), values.size() * sizeof(float))) << c.str(dtype);
      }
    }
}

// Through autograd: the output takes qkv's dtype, lse stays internal, and the gradient reaching
// qkv matches the CPU's.
TEST(CudaAttention, AutogradOutputDtypeAndGradient) {
  TG_REQUIRE_GPU();
  const Case c{2, 70, 2, 64};
  for (DType dtype : test::cuda_float_dtypes()) {
    Generator gen(31);
    Tensor qkv_cpu = rounded_randn({c.B, c.T, 3 * c.NH * c.HS}, gen, dtype);
    Tensor dout_cpu = rounded_randn({c.B, c.T, c.NH * c.HS}, gen, dtype);
    Tensor qkv = to_device(qkv_cpu, dtype).requires_grad_(true);
    Tensor y = causal_self_attention(qkv, c.NH);
    EXPECT_EQ(y.dtype(), dtype);
    EXPECT_TRUE(y.device().is_cuda());
    backward(y, to_device(dout_cpu, dtype));
    ASSERT_TRUE(qkv.grad().defined());
    EXPECT_EQ(qkv.grad().dtype(), dtype);

    qkv_cpu.requires_grad_(true);
    Tensor y_cpu = causal_self_attention(qkv_cpu, c.NH);
    backward(y_cpu, dout_cpu);
    EXPECT_LT(rel_error(y, y_cpu), tolerance(dtype, c.HS)) << dtype_name(dtype);
    // The GPU backward ran on the GPU forward's out and lse, so the forward's error reaches the
    // gradient through D = rowsum(dout * out): the two budgets add.
    EXPECT_LT(rel_error(qkv.grad(), qkv_cpu.grad()), 2 * tolerance(dtype, c.HS)) << dtype_name(dtype);
  }
}

TEST(CudaAttention, HeadSizeAbove256ThrowsNamingIt) {
  TG_REQUIRE_GPU();
  Tensor qkv = Tensor::zeros({1, 4, 3 * 264}, DType::BF16, gpu());
  EXPECT_ERROR_MENTIONS(causal_self_attention(qkv, 1), "causal_self_attention", "HS = 264");
}

// ---- CPU-runnable: argument checks ------------------------------------------------------------

TEST(CudaAttention, HalfPrecisionOnCpuThrowsNamingDtype) {
  Tensor qkv = Tensor::zeros({1, 4, 12}, DType::BF16);
  EXPECT_ERROR_MENTIONS(causal_self_attention(qkv, 2), "causal_self_attention", "qkv", "bf16", "f32");
}

TEST(CudaAttention, MismatchedDtypesThrowNamingBoth) {
  Tensor qkv = Tensor::zeros({1, 4, 12});
  Tensor out16 = Tensor::empty({1, 4, 4}, DType::F16), lse = Tensor::empty({1, 2, 4});
  EXPECT_ERROR_MENTIONS(ops::attention_forward(out16, lse, qkv, 2), "causal_self_attention", "out", "f16", "f32");
  Tensor out = Tensor::empty({1, 4, 4}), lse16 = Tensor::empty({1, 2, 4}, DType::BF16);
  EXPECT_ERROR_MENTIONS(ops::attention_forward(out, lse16, qkv, 2), "causal_self_attention", "lse", "bf16", "f32");
  Tensor dqkv = Tensor::zeros({1, 4, 12}, DType::BF16), dout = Tensor::zeros({1, 4, 4});
  EXPECT_ERROR_MENTIONS(ops::attention_backward(dqkv, dout, qkv, out, lse, 2), "causal_self_attention", "dqkv",
                        "bf16");
}

}  // namespace
