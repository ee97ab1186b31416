// CUDA recurrent cells (LSTM and GRU, forward and backward) against the CPU kernels on the same
// rounded inputs, in f32, bf16 and f16, with poisoned outputs and backward gradients added into a
// random start; and a whole 2-layer LSTM on the GPU against the same module on the CPU.
//
// Tolerances are norm-wise relative errors (test::rel_error); one rounding into a format with p
// significand bits moves a value by at most u = 2^-p of itself (f32 24, bf16 8, f16 11).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/reduce.h"
#include "nn/rnn.h"
#include "ops/rnn.h"
#include "tensor/tensor.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

// The f32 difference between the devices: CUDA's expf/tanhf (<= 2 ulp) against the CPU's
// vectorized exp/tanh (~2 ulp), each value then through about ten f32 operations: 16 ulp (1e-6)
// forward; the backward recomputes tanh(c) and chains a few more products: 32 ulp (2e-6).
constexpr double kF32Forward = 1e-6;
constexpr double kF32Backward = 2e-6;

// Element-wise (test::elementwise_close), u = 2^-24, R the dtype's unit roundoff (0 for f32):
// gate activations and products are relative (16 u forward, as above), but the cells add terms of
// either sign (c = f c_prev + i g; h = (1 - z) n + z h_prev; n's argument gx + r gh; the backward's
// dc + dh o (1 - tanh^2 c) and every add into the start), where only the size of the terms bounds
// the difference. Those sizes are bounded through the tensors' largest elements (gates and tanh
// are at most 1 in size): absolute(terms) = 32 u (terms) for the forward and 64 u (terms) for the
// backward (twice the relative budgets above, for the two sides), plus R of the result for the
// GPU's rounding and the subnormal half-spacing.
double largest(const Tensor& t) {
  double m = 0;
  for (float v : t.to_vector()) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}
test::Tolerance cell_tolerance(DType dtype, double relative_f32, double absolute) {
  const double R = dtype == DType::F32 ? 0.0 : test::unit_roundoff(dtype);
  return {absolute * (1 + R) + test::subnormal_half_spacing(dtype), (R + relative_f32) * (1 + R)};
}

// Odd sizes: H not a multiple of a warp, B·H not a multiple of the block.
const std::vector<std::pair<int64_t, int64_t>>& sizes() {
  static const std::vector<std::pair<int64_t, int64_t>> bh = {{1, 1}, {3, 7}, {5, 33}, {17, 129}};
  return bh;
}

}  // namespace

// Forward: the GPU's outputs are rounded once to the dtype (the cell computes in f32 inside), so
// u + the f32 difference. Backward: both sides read the same rounded saved tensors (the GPU's
// forward outputs), so the error is the rounding of the product and of the add into the start:
// 2u + the f32 difference.
TEST(CudaRnn, LstmCellMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(1);
  for (DType dtype : test::cuda_float_dtypes())
    for (auto [B, H] : sizes()) {
      const double u = test::unit_roundoff(dtype);
      std::string what = std::string(dtype_name(dtype)) + " B=" + std::to_string(B) + " H=" + std::to_string(H);
      Tensor gx = test::rounded_randn({B, 4 * H}, gen, dtype, 2.0f), gh = test::rounded_randn({B, 4 * H}, gen, dtype, 2.0f);
      Tensor cp = test::rounded_randn({B, H}, gen, dtype);
      Tensor h_ref = Tensor::empty({B, H}), c_ref = Tensor::empty({B, H}), gates_ref = Tensor::empty({B, 4 * H});
      ops::lstm_cell_forward(h_ref, c_ref, gates_ref, gx, gh, cp);
      Tensor h = test::poisoned({B, H}, dtype), c = test::poisoned({B, H}, dtype), gates = test::poisoned({B, 4 * H}, dtype);
      ops::lstm_cell_forward(h, c, gates, test::to_device(gx, dtype), test::to_device(gh, dtype), test::to_device(cp, dtype));
      EXPECT_LT(test::rel_error(h, h_ref), u + kF32Forward) << what << " h";
      EXPECT_LT(test::rel_error(c, c_ref), u + kF32Forward) << what << " c";
      EXPECT_LT(test::rel_error(gates, gates_ref), u + kF32Forward) << what << " gates";
      {
        // c = f c_prev + i g: terms of size |c_prev| + 1; h = o tanh(c) inherits c's difference.
        const double u32 = std::ldexp(1.0, -24), terms = largest(cp) + 1;
        EXPECT_TRUE(test::elementwise_close(gates, gates_ref, cell_tolerance(dtype, 16 * u32, 0))) << what << " gates";
        EXPECT_TRUE(test::elementwise_close(c, c_ref, cell_tolerance(dtype, 16 * u32, 32 * u32 * terms))) << what << " c";
        EXPECT_TRUE(test::elementwise_close(h, h_ref, cell_tolerance(dtype, 16 * u32, 32 * u32 * terms))) << what << " h";
      }

      Tensor gates_f = gates.to(Device::cpu()).to(DType::F32), c_f = c.to(Device::cpu()).to(DType::F32);
      Tensor dh = test::rounded_randn({B, H}, gen, dtype), dc = test::rounded_randn({B, H}, gen, dtype);
      Tensor sx = test::rounded_randn({B, 4 * H}, gen, dtype), sh = test::rounded_randn({B, 4 * H}, gen, dtype);
      Tensor sc = test::rounded_randn({B, H}, gen, dtype);
      Tensor dgx_ref = sx.clone(), dgh_ref = sh.clone(), dcp_ref = sc.clone();
      ops::lstm_cell_backward(dgx_ref, dgh_ref, dcp_ref, gates_f, cp, c_f, dh, dc);
      Tensor dgx = test::to_device(sx, dtype), dgh = test::to_device(sh, dtype), dcp = test::to_device(sc, dtype);
      ops::lstm_cell_backward(dgx, dgh, dcp, gates, test::to_device(cp, dtype), c, test::to_device(dh, dtype),
                              test::to_device(dc, dtype));
      EXPECT_LT(test::rel_error(dgx, dgx_ref), 2 * u + kF32Backward) << what << " dgates_x";
      EXPECT_LT(test::rel_error(dgh, dgh_ref), 2 * u + kF32Backward) << what << " dgates_h";
      EXPECT_LT(test::rel_error(dcp, dcp_ref), 2 * u + kF32Backward) << what << " dc_prev";
      {
        // dc_total = dc + dh o (1 - tanh^2 c), then times gates, c_prev or tanh(c) (size <=
        // max(1, |c_prev|)), and added into the start: terms of size (|dc| + |dh|) max(1, |c_prev|)
        // + |start|.
        const double u32 = std::ldexp(1.0, -24);
        const double terms = (largest(dc) + largest(dh)) * std::max(1.0, largest(cp));
        const double start = std::max({largest(sx), largest(sh), largest(sc)});
        const test::Tolerance tol = cell_tolerance(dtype, 2 * u32, 64 * u32 * terms + 2 * u32 * start);
        EXPECT_TRUE(test::elementwise_close(dgx, dgx_ref, tol)) << what << " dgates_x";
        EXPECT_TRUE(test::elementwise_close(dgh, dgh_ref, tol)) << what << " dgates_h";
        EXPECT_TRUE(test::elementwise_close(dcp, dcp_ref, tol)) << what << " dc_prev";
      }
    }
}

TEST(CudaRnn, GruCellMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator gen(2);
  for (DType dtype : test::cuda_float_dtypes())
    for (auto [B, H] : sizes()) {
      const double u = test::unit_roundoff(dtype);
      std::string what = std::string(dtype_name(dtype)) + " B=" + std::to_string(B) + " H=" + std::to_string(H);
      Tensor gx = test::rounded_randn({B, 3 * H}, gen, dtype, 2.0f), gh = test::rounded_randn({B, 3 * H}, gen, dtype, 2.0f);
      Tensor hp = test::rounded_randn({B, H}, gen, dtype);
      Tensor h_ref = Tensor::empty({B, H}), saved_ref = Tensor::empty({B, 4 * H});
      ops::gru_cell_forward(h_ref, saved_ref, gx, gh, hp);
      Tensor h = test::poisoned({B, H}, dtype), saved = test::poisoned({B, 4 * H}, dtype);
      ops::gru_cell_forward(h, saved, test::to_device(gx, dtype), test::to_device(gh, dtype), test::to_device(hp, dtype));
      EXPECT_LT(test::rel_error(h, h_ref), u + kF32Forward) << what << " h";
      EXPECT_LT(test::rel_error(saved, saved_ref), u + kF32Forward) << what << " saved";
      {
        // n = tanh(gx_n + r gh_n): the argument's terms |gx| + |gh| (tanh' <= 1); h = (1 - z) n +
        // z h_prev: terms 1 + |h_prev|. The saved gates carry the argument's difference too.
        const double u32 = std::ldexp(1.0, -24);
        const double arg = largest(gx) + largest(gh), terms = 1 + largest(hp) + arg;
        EXPECT_TRUE(test::elementwise_close(saved, saved_ref, cell_tolerance(dtype, 16 * u32, 32 * u32 * arg)))
            << what << " saved";
        EXPECT_TRUE(test::elementwise_close(h, h_ref, cell_tolerance(dtype, 16 * u32, 32 * u32 * terms))) << what << " h";
      }

      Tensor saved_f = saved.to(Device::cpu()).to(DType::F32);
      Tensor dh = test::rounded_randn({B, H}, gen, dtype);
      Tensor sx = test::rounded_randn({B, 3 * H}, gen, dtype), sh = test::rounded_randn({B, 3 * H}, gen, dtype);
      Tensor sp = test::rounded_randn({B, H}, gen, dtype);
      Tensor dgx_ref = sx.clone(), dgh_ref = sh.clone(), dhp_ref = sp.clone();
      ops::gru_cell_backward(dgx_ref, dgh_ref, dhp_ref, saved_f, hp, dh);
      Tensor dgx = test::to_device(sx, dtype), dgh = test::to_device(sh, dtype), dhp = test::to_device(sp, dtype);
      ops::gru_cell_backward(dgx, dgh, dhp, saved, test::to_device(hp, dtype), test::to_device(dh, dtype));
      EXPECT_LT(test::rel_error(dgx, dgx_ref), 2 * u + kF32Backward) << what << " dgates_x";
      EXPECT_LT(test::rel_error(dgh, dgh_ref), 2 * u + kF32Backward) << what << " dgates_h";
      EXPECT_LT(test::rel_error(dhp, dhp_ref), 2 * u + kF32Backward) << what << " dh_prev";
      {
        // dh times gates, n, h_prev or the saved gh_n (sizes <= max(1, |h_prev|, the saved
        // values)), combined with either sign and added into the start.
        const double u32 = std::ldexp(1.0, -24);
        const double terms = largest(dh) * std::max({1.0, largest(hp), largest(saved_f)});
        const double start = std::max({largest(sx), largest(sh), largest(sp)});
        const test::Tolerance tol = cell_tolerance(dtype, 2 * u32, 64 * u32 * terms + 2 * u32 * start);
        EXPECT_TRUE(test::elementwise_close(dgx, dgx_ref, tol)) << what << " dgates_x";
        EXPECT_TRUE(test::elementwise_close(dgh, dgh_ref, tol)) << what << " dgates_h";
        EXPECT_TRUE(test::elementwise_close(dhp, dhp_ref, tol)) << what << " dh_prev";
      }
    }
}

// The module end to end in f32: the same weights on both devices. The GPU's GEMMs sum in another
// order than the CPU's (tensor-core tiles against AVX-512 panels); each step's GEMM of length
// K = 17 differs by up to K u, carried through T L = 12 steps with the cells' 16 ulp: 12 (17 + 16) u,
// 2.4e-5 for the outputs, twice that for the gradients.
TEST(CudaRnn, LstmModuleMatchesCpu) {
  TG_REQUIRE_GPU();
  Generator a(3), b(3), gen(4);
  const int64_t T = 6, B = 5, I = 9, H = 17;
  LSTM cpu_lstm(I, H, 2, true, 0.0f, true, &a), gpu_lstm(I, H, 2, true, 0.0f, true, &b);
  gpu_lstm.to(test::gpu());
  Tensor x = Tensor::randn({B, T, I}, &gen), w = Tensor::randn({B, T, H}, &gen);
  Tensor x_cpu = x.clone().requires_grad_(), x_gpu = x.to(test::gpu()).requires_grad_();
  RNNOutput ref = cpu_lstm.forward(x_cpu), out = gpu_lstm.forward(x_gpu);
  EXPECT_LT(test::rel_error(out.output, ref.output), 2.4e-5);
  EXPECT_LT(test::rel_error(out.h_n, ref.h_n), 2.4e-5);
  EXPECT_LT(test::rel_error(out.c_n, ref.c_n), 2.4e-5);
  // Element-wise: the same budget, of the size of the terms that reach an element, which the
  // tensor's largest element bounds here (every step mixes all of the previous step's H values
  // through the recurrent GEMM): |gpu - cpu| <= 2.4e-5 (|cpu| + max |cpu|).
  auto within = [](const Tensor& got, const Tensor& want, double budget) {
    return test::elementwise_close(got, want, test::Tolerance{budget * largest(want), budget});
  };
  EXPECT_TRUE(within(out.output, ref.output, 2.4e-5));
  EXPECT_TRUE(within(out.h_n, ref.h_n, 2.4e-5));
  EXPECT_TRUE(within(out.c_n, ref.c_n, 2.4e-5));
  backward(sum(ref.output * w) + sum(ref.c_n));
  backward(sum(out.output * w.to(test::gpu())) + sum(out.c_n));
  EXPECT_LT(test::rel_error(x_gpu.grad(), x_cpu.grad()), 4.8e-5);
  EXPECT_TRUE(within(x_gpu.grad(), x_cpu.grad(), 4.8e-5));
  NamedTensors pc = cpu_lstm.named_parameters(), pg = gpu_lstm.named_parameters();
  for (size_t k = 0; k < pc.size(); k++) {
    EXPECT_LT(test::rel_error(pg[k].second.grad(), pc[k].second.grad()), 4.8e-5) << pc[k].first;
    EXPECT_TRUE(within(pg[k].second.grad(), pc[k].second.grad(), 4.8e-5)) << pc[k].first;
  }
}

// Half precision runs on the CPU too (tests/test_half_ops.cpp); mixed dtypes are refused by name.
TEST(CudaRnn, MixedDtypesAreAClearError) {
  Tensor g = Tensor::zeros({2, 12}, DType::F16), c = Tensor::zeros({2, 3});
  Tensor h = Tensor::empty({2, 3}, DType::F16), cn = Tensor::empty({2, 3}, DType::F16), gates = Tensor::empty({2, 12}, DType::F16);
  EXPECT_ERROR_MENTIONS(ops::lstm_cell_forward(h, cn, gates, g, g, c), "lstm_cell", "f16", "f32");
}
