// bf16 and f16 through the CPU fronts of every op family the GPT and LSTM paths use (the GEMM and
// attention have their own suites): each front runs on half tensors and, on the same values widened
// exactly to f32, the f32 kernels. The contract is the CUDA kernels' (load, compute in f32, round
// once on store), so every half output must lie within one rounding of the f32 result:
//   |half - f32| <= u |f32| + eta,
// u the unit roundoff (2^-8 for bf16's 8 significant bits, 2^-11 for f16's 11) and eta half the
// spacing of the dtype's subnormals (the absolute error of a rounding below the normal range).
// Nothing is added for the reductions: both runs reduce the same f32 values in the same f32 order, so
// the f32 statistics (LayerNorm's mean and rstd, the loss, its log-sum-exp) must be equal bit for bit.
// A gradient buffer starts non-zero, so the one rounding is of the f32 sum old + contribution.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ops/accumulate.h"
#include "ops/activation.h"
#include "ops/concat.h"
#include "ops/crossentropy.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/layernorm.h"
#include "ops/reduce.h"
#include "ops/rnn.h"
#include "ops/softmax.h"
#include "tensor/random.h"
#include "tests/half_cpu_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

class HalfCpuOps : public test::HalfCpuOpsTest {};

using test::half_subnormal;
using test::half_unit_roundoff;
using test::widened;

void expect_one_rounding(const Tensor& half, const Tensor& f32, const std::string& what) {
  ASSERT_NE(half.dtype(), DType::F32) << what << " should be stored in half precision";
  std::vector<float> want = f32.to_vector();
  expect_close(half.to_vector(), std::vector<double>(want.begin(), want.end()), half_subnormal(half.dtype()),
               half_unit_roundoff(half.dtype()), what);
}

void expect_bitwise_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.dtype(), DType::F32) << what << " is an f32 statistic";
  EXPECT_EQ(a.to_vector(), b.to_vector()) << what;
}

TEST_P(HalfCpuOps, LayerNormForwardAndBackward) {
  Generator gen(1401);
  const int64_t N = 7, C = 37;
  Tensor x = draw({N, C}, gen, 3.0f), w = draw({C}, gen), b = draw({C}, gen);
  Tensor out = empty_half({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  ops::layernorm_forward(out, mean, rstd, x, w, b, 1e-5f);
  Tensor out32 = Tensor::empty({N, C}), mean32 = Tensor::empty({N}), rstd32 = Tensor::empty({N});
  ops::layernorm_forward(out32, mean32, rstd32, widened(x), widened(w), widened(b), 1e-5f);
  expect_one_rounding(out, out32, "layernorm out");
  expect_bitwise_equal(mean, mean32, "layernorm mean");
  expect_bitwise_equal(rstd, rstd32, "layernorm rstd");

  Tensor dout = draw({N, C}, gen), dx = draw({N, C}, gen), dw = draw({C}, gen), db = draw({C}, gen);
  Tensor dx32 = widened(dx), dw32 = widened(dw), db32 = widened(db);
  ops::layernorm_backward(dx, dw, db, dout, x, w, mean, rstd);
  ops::layernorm_backward(dx32, dw32, db32, widened(dout), widened(x), widened(w), mean32, rstd32);
  expect_one_rounding(dx, dx32, "layernorm dx");
  expect_one_rounding(dw, dw32, "layernorm dweight");
  expect_one_rounding(db, db32, "layernorm dbias");
}

// As on CUDA, the residual is rounded when stored and normalised as stored: out is one rounding of
// the f32 LayerNorm of the half residual.
TEST_P(HalfCpuOps, AddLayerNormNormalisesTheStoredResidual) {
  Generator gen(1402);
  const int64_t N = 5, C = 19;
  Tensor a = draw({N, C}, gen), b = draw({N, C}, gen), w = draw({C}, gen), bias = draw({C}, gen);
  Tensor residual = empty_half({N, C}), out = empty_half({N, C}), mean = Tensor::empty({N}), rstd = Tensor::empty({N});
  ops::add_layernorm(residual, out, mean, rstd, a, b, w, bias, 1e-5f);
  Tensor sum32 = Tensor::empty({N, C});
  ops::add_forward(sum32, widened(a), widened(b));
  expect_one_rounding(residual, sum32, "add_layernorm residual");
  Tensor out32 = Tensor::empty({N, C}), mean32 = Tensor::empty({N}), rstd32 = Tensor::empty({N});
  ops::layernorm_forward(out32, mean32, rstd32, widened(residual), widened(w), widened(bias), 1e-5f);
  expect_one_rounding(out, out32, "add_layernorm out");
  expect_bitwise_equal(mean, mean32, "add_layernorm mean");
  expect_bitwise_equal(rstd, rstd32, "add_layernorm rstd");
}

struct Activation {
  const char* name;
  void (*forward)(Tensor&, const Tensor&);
  void (*backward)(Tensor&, const Tensor&, const Tensor&);
  bool backward_reads_output;
};

TEST_P(HalfCpuOps, ActivationsForwardAndBackward) {
  const Activation activations[] = {{"gelu", ops::gelu_forward, ops::gelu_backward, false},
                                    {"relu", ops::relu_forward, ops::relu_backward, true},
                                    {"tanh", ops::tanh_forward, ops::tanh_backward, true},
                                    {"sigmoid", ops::sigmoid_forward, ops::sigmoid_backward, false},
                                    {"silu", ops::silu_forward, ops::silu_backward, false}};
  Generator gen(1403);
  const int64_t n = 1037;  // 64 vectors of 16 and a tail of 13
  for (const Activation& act : activations) {
    Tensor inp = draw({n}, gen, 3.0f), out = empty_half({n}), out32 = Tensor::empty({n});
    act.forward(out, inp);
    act.forward(out32, widened(inp));
    expect_one_rounding(out, out32, std::string(act.name) + " forward");
    const Tensor& saved = act.backward_reads_output ? out : inp;
    Tensor dout = draw({n}, gen), dinp = draw({n}, gen), dinp32 = widened(dinp);
    act.backward(dinp, saved, dout);
    act.backward(dinp32, widened(saved), widened(dout));
    expect_one_rounding(dinp, dinp32, std::string(act.name) + " backward");
  }
}

TEST_P(HalfCpuOps, ElementwiseBroadcastStridedAndBackward) {
  Generator gen(1404);
  const int64_t R = 9, C = 21;
  Tensor a = draw({R, C}, gen), row = draw({C}, gen), at = draw({C, R}, gen).transpose(0, 1);  // a strided view
  using Binary = void (*)(Tensor&, const Tensor&, const Tensor&);
  const std::pair<const char*, Binary> binaries[] = {
      {"add", ops::add_forward}, {"sub", ops::sub_forward}, {"mul", ops::mul_forward}, {"div", ops::div_forward}};
  for (const auto& [name, forward] : binaries) {
    Tensor out = empty_half({R, C}), out32 = Tensor::empty({R, C});
    forward(out, a, row);
    forward(out32, widened(a), widened(row));
    expect_one_rounding(out, out32, std::string(name) + " broadcast");
    forward(out, at, a);
    forward(out32, widened(at), widened(a));
    expect_one_rounding(out, out32, std::string(name) + " of a transposed view");
  }
  Tensor dout = draw({R, C}, gen), da = draw({R, C}, gen), drow = draw({C}, gen);
  Tensor da32 = widened(da), drow32 = widened(drow);
  ops::mul_backward(da, drow, dout, a, row);
  ops::mul_backward(da32, drow32, widened(dout), widened(a), widened(row));
  expect_one_rounding(da, da32, "mul da");
  expect_one_rounding(drow, drow32, "mul db, summed over rows");
  da32 = widened(da);  // both runs continue from the stored half gradients
  drow32 = widened(drow);
  ops::add_backward(da, drow, dout);
  ops::add_backward(da32, drow32, widened(dout));
  expect_one_rounding(da, da32, "add da");
  expect_one_rounding(drow, drow32, "add db, summed over rows");

  Tensor scaled = empty_half({R, C}), scaled32 = Tensor::empty({R, C});
  ops::scale_forward(scaled, a, 0.3f);
  ops::scale_forward(scaled32, widened(a), 0.3f);
  expect_one_rounding(scaled, scaled32, "scale");
  ops::add_scalar_forward(scaled, a, 0.7f);
  ops::add_scalar_forward(scaled32, widened(a), 0.7f);
  expect_one_rounding(scaled, scaled32, "add_scalar");
}

TEST_P(HalfCpuOps, SoftmaxAndLogSoftmax) {
  Generator gen(1405);
  const int64_t rows = 5, C = 67;
  Tensor inp = draw({rows, C}, gen, 4.0f);
  for (bool log : {false, true}) {
    const std::string name = log ? "log_softmax" : "softmax";
    Tensor out = empty_half({rows, C}), out32 = Tensor::empty({rows, C});
    (log ? ops::log_softmax_forward : ops::softmax_forward)(out, inp);
    (log ? ops::log_softmax_forward : ops::softmax_forward)(out32, widened(inp));
    expect_one_rounding(out, out32, name + " forward");
    // Backward from the half output both ways, so only the kernel's output rounding differs.
    Tensor dout = draw({rows, C}, gen), dinp = draw({rows, C}, gen), dinp32 = widened(dinp);
    (log ? ops::log_softmax_backward : ops::softmax_backward)(dinp, out, dout);
    (log ? ops::log_softmax_backward : ops::softmax_backward)(dinp32, widened(out), widened(dout));
    expect_one_rounding(dinp, dinp32, name + " backward");
  }
}

// The loss and its log-sum-exp are f32 whatever the logits' dtype.
TEST_P(HalfCpuOps, CrossEntropyLossIsF32) {
  Generator gen(1406);
  const int64_t N = 6, V = 53;
  Tensor logits = draw({N, V}, gen, 3.0f);
  Tensor targets = Tensor::from_ints({3, -100, 52, 0, 17, 17}, {N});
  Tensor loss = Tensor::empty({}), lse = Tensor::empty({N}), loss32 = Tensor::empty({}), lse32 = Tensor::empty({N});
  ops::crossentropy_forward(loss, lse, logits, targets, -100, 0.1f);
  ops::crossentropy_forward(loss32, lse32, widened(logits), targets, -100, 0.1f);
  expect_bitwise_equal(loss, loss32, "cross-entropy loss");
  expect_bitwise_equal(lse, lse32, "cross-entropy lse");

  Tensor dloss = Tensor::full({}, 0.5f), dlogits = draw({N, V}, gen), dlogits32 = widened(dlogits);
  ops::crossentropy_backward(dlogits, dloss, logits, targets, lse, -100, 0.1f);
  ops::crossentropy_backward(dlogits32, dloss, widened(logits), targets, lse32, -100, 0.1f);
  expect_one_rounding(dlogits, dlogits32, "cross-entropy dlogits");
  Tensor in_place = logits.clone(), in_place32 = widened(logits);
  ops::crossentropy_backward_inplace(in_place, dloss, targets, lse, -100, 0.1f);
  ops::crossentropy_backward_inplace(in_place32, dloss, targets, lse32, -100, 0.1f);
  expect_one_rounding(in_place, in_place32, "cross-entropy dlogits in place");
}

// The forward copies rows (exact); the backward sums a repeated id's rows in f32 and rounds once.
TEST_P(HalfCpuOps, EmbeddingScatterAddsInF32) {
  Generator gen(1407);
  const int64_t V = 11, C = 29;
  Tensor ids = Tensor::from_ints({4, 0, 4, 10, 4, 7, 0}, {7});
  Tensor weight = draw({V, C}, gen), out = empty_half({7, C});
  ops::embedding_forward(out, ids, weight);
  Tensor out32 = Tensor::empty({7, C});
  ops::embedding_forward(out32, ids, widened(weight));
  EXPECT_EQ(out.to_vector(), out32.to_vector()) << "embedding rows are copied, not rounded";
  Tensor dout = draw({7, C}, gen), dweight = draw({V, C}, gen), dweight32 = widened(dweight);
  ops::embedding_backward(dweight, dout, ids);
  ops::embedding_backward(dweight32, widened(dout), ids);
  expect_one_rounding(dweight, dweight32, "embedding dweight");
}

TEST_P(HalfCpuOps, DropoutKeepsTheF32Mask) {
  Generator gen(1408);
  const int64_t n = 533;
  Tensor inp = draw({n}, gen), out = empty_half({n}), out32 = Tensor::empty({n});
  ops::dropout_forward(out, inp, 0.3f, 99);
  ops::dropout_forward(out32, widened(inp), 0.3f, 99);
  expect_one_rounding(out, out32, "dropout forward");
  Tensor dout = draw({n}, gen), dinp = draw({n}, gen), dinp32 = widened(dinp);
  ops::dropout_backward(dinp, dout, 0.3f, 99);
  ops::dropout_backward(dinp32, widened(dout), 0.3f, 99);
  expect_one_rounding(dinp, dinp32, "dropout backward");
}

TEST_P(HalfCpuOps, SumsReduceInF32) {
  Generator gen(1409);
  Tensor inp = draw({6, 45, 7}, gen);
  Tensor all = empty_half({}), all32 = Tensor::empty({});
  ops::sum_forward(all, inp, 0.5f);
  ops::sum_forward(all32, widened(inp), 0.5f);
  expect_one_rounding(all, all32, "sum");
  Tensor mid = empty_half({6, 7}), mid32 = Tensor::empty({6, 7});
  ops::sum_dim_forward(mid, inp, 1);
  ops::sum_dim_forward(mid32, widened(inp), 1);
  expect_one_rounding(mid, mid32, "sum over dim 1");
  Tensor dinp = draw({6, 45, 7}, gen), dinp32 = widened(dinp), dmid = draw({6, 7}, gen);
  ops::sum_dim_backward(dinp, dmid, 1);
  ops::sum_dim_backward(dinp32, widened(dmid), 1);
  expect_one_rounding(dinp, dinp32, "sum over dim 1, backward");
}

// Strided views on both sides: the staged copy spans the view, and the elements between the view's
// own (here the other columns of dst) are stored back unchanged.
TEST_P(HalfCpuOps, AccumulateIntoStridedViews) {
  Generator gen(1410);
  Tensor dst = draw({13, 6}, gen), src = draw({4, 13}, gen).transpose(0, 1);  // src (13, 4), strided
  Tensor expected = widened(dst);
  const std::vector<float> old = expected.to_vector();
  Tensor view = dst.narrow(1, 1, 4), expected_view = expected.narrow(1, 1, 4);
  ops::accumulate(view, src);
  ops::accumulate(expected_view, widened(src));
  expect_one_rounding(dst, expected, "accumulate into columns 1..4");
  const std::vector<float> got = dst.to_vector();
  for (int64_t r = 0; r < 13; r++)
    for (int64_t c : {0, 5}) EXPECT_EQ(got[r * 6 + c], old[r * 6 + c]) << "dst[" << r << ", " << c << "] outside the view";
}

TEST_P(HalfCpuOps, ConcatCopiesAndItsBackwardAccumulates) {
  Generator gen(1411);
  Tensor a = draw({3, 5}, gen), b = draw({3, 2}, gen), out = empty_half({3, 7});
  ops::concat_forward(out, {a, b}, 1);
  Tensor out32 = Tensor::empty({3, 7});
  ops::concat_forward(out32, {widened(a), widened(b)}, 1);
  EXPECT_EQ(out.to_vector(), out32.to_vector()) << "concat copies";
  Tensor dout = draw({3, 7}, gen);
  std::vector<Tensor> grads = {draw({3, 5}, gen), draw({3, 2}, gen)};
  std::vector<Tensor> grads32 = {widened(grads[0]), widened(grads[1])};
  ops::concat_backward(grads, dout, 1, {5, 2});
  ops::concat_backward(grads32, widened(dout), 1, {5, 2});
  expect_one_rounding(grads[0], grads32[0], "concat dinput 0");
  expect_one_rounding(grads[1], grads32[1], "concat dinput 1");
}

TEST_P(HalfCpuOps, LstmCellForwardAndBackward) {
  Generator gen(1412);
  const int64_t B = 3, H = 21;
  Tensor gx = draw({B, 4 * H}, gen), gh = draw({B, 4 * H}, gen), cp = draw({B, H}, gen);
  Tensor h = empty_half({B, H}), c = empty_half({B, H}), gates = empty_half({B, 4 * H});
  Tensor h32 = Tensor::empty({B, H}), c32 = Tensor::empty({B, H}), gates32 = Tensor::empty({B, 4 * H});
  ops::lstm_cell_forward(h, c, gates, gx, gh, cp);
  ops::lstm_cell_forward(h32, c32, gates32, widened(gx), widened(gh), widened(cp));
  expect_one_rounding(gates, gates32, "lstm gates");
  expect_one_rounding(c, c32, "lstm c");
  expect_one_rounding(h, h32, "lstm h");
  // Backward from the half saved tensors both ways.
  Tensor dh = draw({B, H}, gen), dc = draw({B, H}, gen);
  Tensor dgx = draw({B, 4 * H}, gen), dgh = draw({B, 4 * H}, gen), dcp = draw({B, H}, gen);
  Tensor dgx32 = widened(dgx), dgh32 = widened(dgh), dcp32 = widened(dcp);
  ops::lstm_cell_backward(dgx, dgh, dcp, gates, cp, c, dh, dc);
  ops::lstm_cell_backward(dgx32, dgh32, dcp32, widened(gates), widened(cp), widened(c), widened(dh), widened(dc));
  expect_one_rounding(dgx, dgx32, "lstm dgates_x");
  expect_one_rounding(dgh, dgh32, "lstm dgates_h");
  expect_one_rounding(dcp, dcp32, "lstm dc_prev");
}

// An integer tensor is refused everywhere with the dtypes the floating-point kernels take (the
// image path's fronts: tests/test_half_cnn_ops.cpp).
TEST_P(HalfCpuOps, WhatTheCpuKernelsRefuse) {
  Tensor ints = Tensor::from_ints({1, 2, 3}, {3}), out = Tensor::empty({3}, DType::I32);
  EXPECT_ERROR_MENTIONS(ops::gelu_forward(out, ints), "gelu", "inp", "i32", "expected f32, bf16 or f16");
}

INSTANTIATE_TEST_SUITE_P(, HalfCpuOps, ::testing::Values(DType::BF16, DType::F16),
                         [](const ::testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); });

}  // namespace
