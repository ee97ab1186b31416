// Causal self-attention on bf16 and f16 tensors on the CPU, forward and backward, at every
// instruction-set level: against the f32 kernel run on the same half-rounded inputs.
//
// The bound is derived, and it is zero: the 16-bit kernels widen their inputs exactly, run the f32
// kernel's arithmetic on them and round each output once (out; dqkv after the gradient is added
// to its widened old value), so every 16-bit output must equal the f32 result rounded, bit for
// bit, and lse must equal the f32 lse exactly. The f32 kernel itself is checked against naive
// double references in tests/test_attention.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/attention.h"
#include "cpu_isa_test_util.h"
#include "ops/attention.h"
#include "tensor/random.h"
#include "test_util.h"

using namespace tg;

namespace {

class AttentionHalf : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(AttentionHalf);

struct Shape4 {
  int64_t B, T, C, NH;
};

// Awkward sizes: T off the 64-step tiles and the vector width, head sizes that are not whole vectors.
// On two threads, {1, 1, 3, 1} and {1, 70, 40, 2} stage the whole tensors and the others (at least
// two (batch element, head) pairs per thread) one pair at a time.
const Shape4 kShapes[] = {{1, 1, 3, 1}, {2, 7, 12, 2}, {1, 70, 40, 2}, {2, 130, 24, 3}};

// The 16-bit tensor's values as an f32 tensor (exact) and as bits.
Tensor widen(const Tensor& t) { return t.to(DType::F32); }

std::vector<uint16_t> bits(const Tensor& t) {
  const uint16_t* p = static_cast<const uint16_t*>(t.contiguous().data_raw());
  return std::vector<uint16_t>(p, p + t.numel());
}

std::string name(DType dtype, const Shape4& s) {
  return std::string(dtype_name(dtype)) + " B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) +
         " C=" + std::to_string(s.C) + " NH=" + std::to_string(s.NH);
}

TEST_P(AttentionHalf, ForwardIsTheF32KernelRoundedOnce) {
  Generator gen(401);
  for (DType dtype : {DType::BF16, DType::F16})
    for (const Shape4& s : kShapes) {
      Tensor qkv = Tensor::randn({s.B, s.T, 3 * s.C}, &gen).to(dtype);
      Tensor out = Tensor::empty({s.B, s.T, s.C}, dtype), lse = Tensor::empty({s.B, s.NH, s.T});
      ops::attention_forward(out, lse, qkv, s.NH);
      Tensor out32 = Tensor::empty({s.B, s.T, s.C}), lse32 = Tensor::empty({s.B, s.NH, s.T});
      ops::attention_forward(out32, lse32, widen(qkv), s.NH);
      EXPECT_EQ(bits(out), bits(out32.to(dtype))) << name(dtype, s);
      EXPECT_EQ(lse.to_vector(), lse32.to_vector()) << name(dtype, s);
    }
}

TEST_P(AttentionHalf, BackwardIsTheF32KernelRoundedOnce) {
  Generator gen(402);
  for (DType dtype : {DType::BF16, DType::F16})
    for (const Shape4& s : kShapes) {
      Tensor qkv = Tensor::randn({s.B, s.T, 3 * s.C}, &gen).to(dtype);
      Tensor out = Tensor::empty({s.B, s.T, s.C}, dtype), lse = Tensor::empty({s.B, s.NH, s.T});
      ops::attention_forward(out, lse, qkv, s.NH);
      Tensor dout = Tensor::randn({s.B, s.T, s.C}, &gen).to(dtype);
      // dqkv starts non-zero: the kernel adds into it, and the sum is what is rounded.
      Tensor dqkv = Tensor::randn({s.B, s.T, 3 * s.C}, &gen).to(dtype), dqkv32 = widen(dqkv);
      ops::attention_backward(dqkv, dout, qkv, out, lse, s.NH);
      ops::attention_backward(dqkv32, widen(dout), widen(qkv), widen(out), lse, s.NH);
      EXPECT_EQ(bits(dqkv), bits(dqkv32.to(dtype))) << name(dtype, s);
    }
}

// Through autograd: the gradient buffer of a bf16 qkv is bf16, and backward fills it with the
// kernel's gradient (starting from zero).
TEST_P(AttentionHalf, AutogradGradientKeepsTheDtype) {
  Generator gen(403);
  const Shape4 s{2, 33, 16, 2};
  for (DType dtype : {DType::BF16, DType::F16}) {
    Tensor qkv = Tensor::randn({s.B, s.T, 3 * s.C}, &gen).to(dtype).requires_grad_(true);
    Tensor y = causal_self_attention(qkv, s.NH);
    ASSERT_EQ(y.dtype(), dtype);
    Tensor dy = Tensor::randn({s.B, s.T, s.C}, &gen).to(dtype);
    backward(y, dy);
    ASSERT_EQ(qkv.grad().dtype(), dtype);
    Tensor out32 = Tensor::empty({s.B, s.T, s.C}), lse32 = Tensor::empty({s.B, s.NH, s.T});
    Tensor q32 = widen(qkv.detach());
    ops::attention_forward(out32, lse32, q32, s.NH);
    // The f32 reference backward reads the forward's out as the 16-bit path stored it.
    Tensor dq32 = Tensor::zeros({s.B, s.T, 3 * s.C});
    ops::attention_backward(dq32, widen(dy), q32, widen(y.detach()), lse32, s.NH);
    EXPECT_EQ(bits(qkv.grad()), bits(dq32.to(dtype))) << dtype_name(dtype);
  }
}

TEST(AttentionHalfErrors, MixedDtypesAreNamed) {
  Tensor qkv = Tensor::zeros({1, 4, 6}, DType::BF16), out = Tensor::empty({1, 4, 2}, DType::F16);
  Tensor lse = Tensor::empty({1, 1, 4});
  EXPECT_ERROR_MENTIONS(ops::attention_forward(out, lse, qkv, 1), "causal_self_attention", "out", "f16", "bf16");
  Tensor out16 = Tensor::empty({1, 4, 2}, DType::BF16), lse16 = Tensor::empty({1, 1, 4}, DType::BF16);
  EXPECT_ERROR_MENTIONS(ops::attention_forward(out16, lse16, qkv, 1), "causal_self_attention", "lse", "bf16");
  Tensor qkv_int = Tensor::zeros({1, 4, 6}, DType::I32);
  EXPECT_ERROR_MENTIONS(ops::check_attention_qkv(qkv_int, 1), "causal_self_attention", "qkv", "i32");
}

}  // namespace
