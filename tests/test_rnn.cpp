// Recurrent layers: the fused LSTM and GRU cell kernels against the formulas evaluated in double
// (forward and backward, the backward adding into a random start), finite-difference gradchecks of
// both cells and of a whole module, parity with PyTorch's nn.LSTM and nn.GRU on the fixture
// tests/reference/make_rnn_fixture.py writes (outputs, final states, every gradient), the module's
// semantics (parameter names and init, batch_first, dropout between layers) and the error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/matmul.h"
#include "autograd/functions/reduce.h"
#include "autograd/functions/rnn.h"
#include "autograd/functions/view.h"
#include "autograd/gradcheck.h"
#include "nn/rnn.h"
#include "ops/rnn.h"
#include "tensor/safetensors.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"
#include "tests/cpu_isa_test_util.h"

using namespace tg;
using tg::test::rel_error;

namespace {

double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<double> as_double(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  return std::vector<double>(v.begin(), v.end());
}

Tensor randn(const Shape& shape, Generator& gen, float scale = 1.0f) {
  Tensor t = Tensor::randn(shape, &gen);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); i++) p[i] *= scale;
  return t;
}

// The cells' tolerance against double: each value passes through a handful of f32 operations
// after one exp or tanh (about 2 ulp each on the vectorized paths of ops/cpu/fast_math.h): 32 ulp
// of the largest value involved, which is O(1) here, covers it (2e-6); a wrong formula or gate
// order misses by O(0.1).
constexpr double kCellAtol = 2e-6;
constexpr double kCellRtol = 2e-6;

}  // namespace

// ---- the cell kernels against double -----------------------------------------------------------

// Every test of RnnCell runs at each instruction-set level of the CPU kernels.
class RnnCell : public CpuIsaTest {};
TG_INSTANTIATE_FOR_EACH_CPU_ISA(RnnCell);

TEST_P(RnnCell, LstmForwardAndBackwardMatchDouble) {
  Generator gen(101);
  const int64_t B = 3, H = 5;  // odd sizes, and H not a multiple of the vector width
  Tensor gx = randn({B, 4 * H}, gen, 2.0f), gh = randn({B, 4 * H}, gen, 2.0f), cp = randn({B, H}, gen);
  Tensor h = Tensor::empty({B, H}), c = Tensor::empty({B, H}), gates = Tensor::empty({B, 4 * H});
  ops::lstm_cell_forward(h, c, gates, gx, gh, cp);

  Tensor dh = randn({B, H}, gen), dc = randn({B, H}, gen);
  Tensor start_x = randn({B, 4 * H}, gen), start_h = randn({B, 4 * H}, gen), start_c = randn({B, H}, gen);
  Tensor dgx = start_x.clone(), dgh = start_h.clone(), dcp = start_c.clone();
  ops::lstm_cell_backward(dgx, dgh, dcp, gates, cp, c, dh, dc);

  std::vector<double> want_h(B * H), want_c(B * H), want_gates(B * 4 * H), want_dgx = as_double(start_x),
      want_dgh = as_double(start_h), want_dcp = as_double(start_c);
  std::vector<float> vx = gx.to_vector(), vh = gh.to_vector(), vc = cp.to_vector(), vdh = dh.to_vector(),
                     vdc = dc.to_vector();
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < H; j++) {
      auto pre = [&](int64_t gate) { return double(vx[b * 4 * H + gate * H + j]) + vh[b * 4 * H + gate * H + j]; };
      const double i = sigmoid_ref(pre(0)), f = sigmoid_ref(pre(1)), g = std::tanh(pre(2)), o = sigmoid_ref(pre(3));
      const double cn = f * vc[b * H + j] + i * g, tc = std::tanh(cn);
      want_c[b * H + j] = cn;
      want_h[b * H + j] = o * tc;
      const double act[4] = {i, f, g, o};
      for (int64_t k = 0; k < 4; k++) want_gates[b * 4 * H + k * H + j] = act[k];
      // d/d(pre-activations) by the chain rule, written from the formulas, not the kernel.
      const double dcell = vdc[b * H + j] + vdh[b * H + j] * o * (1 - tc * tc);
      const double d[4] = {dcell * g * i * (1 - i), dcell * vc[b * H + j] * f * (1 - f), dcell * i * (1 - g * g),
                           vdh[b * H + j] * tc * o * (1 - o)};
      for (int64_t k = 0; k < 4; k++) {
        want_dgx[b * 4 * H + k * H + j] += d[k];
        want_dgh[b * 4 * H + k * H + j] += d[k];
      }
      want_dcp[b * H + j] += dcell * f;
    }
  expect_close(h.to_vector(), want_h, kCellAtol, kCellRtol, "h");
  expect_close(c.to_vector(), want_c, kCellAtol, kCellRtol, "c");
  expect_close(gates.to_vector(), want_gates, kCellAtol, kCellRtol, "gates");
  expect_close(dgx.to_vector(), want_dgx, kCellAtol, kCellRtol, "dgates_x");
  expect_close(dgh.to_vector(), want_dgh, kCellAtol, kCellRtol, "dgates_h");
  expect_close(dcp.to_vector(), want_dcp, kCellAtol, kCellRtol, "dc_prev");

  // An undefined gradient is skipped, and the others are unchanged by its absence.
  Tensor none, dgx2 = start_x.clone();
  ops::lstm_cell_backward(dgx2, none, none, gates, cp, c, dh, dc);
  EXPECT_EQ(dgx2.to_vector(), dgx.to_vector());
}

TEST_P(RnnCell, GruForwardAndBackwardMatchDouble) {
  Generator gen(102);
  const int64_t B = 3, H = 5;
  Tensor gx = randn({B, 3 * H}, gen, 2.0f), gh = randn({B, 3 * H}, gen, 2.0f), hp = randn({B, H}, gen);
  Tensor h = Tensor::empty({B, H}), saved = Tensor::empty({B, 4 * H});
  ops::gru_cell_forward(h, saved, gx, gh, hp);

  Tensor dh = randn({B, H}, gen);
  Tensor start_x = randn({B, 3 * H}, gen), start_h = randn({B, 3 * H}, gen), start_p = randn({B, H}, gen);
  Tensor dgx = start_x.clone(), dgh = start_h.clone(), dhp = start_p.clone();
  ops::gru_cell_backward(dgx, dgh, dhp, saved, hp, dh);

  std::vector<double> want_h(B * H), want_dgx = as_double(start_x), want_dgh = as_double(start_h),
                      want_dhp = as_double(start_p);
  std::vector<float> vx = gx.to_vector(), vh = gh.to_vector(), vp = hp.to_vector(), vdh = dh.to_vector();
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < H; j++) {
      auto x = [&](int64_t gate) { return double(vx[b * 3 * H + gate * H + j]); };
      auto hh = [&](int64_t gate) { return double(vh[b * 3 * H + gate * H + j]); };
      const double r = sigmoid_ref(x(0) + hh(0)), z = sigmoid_ref(x(1) + hh(1)), n = std::tanh(x(2) + r * hh(2));
      const double prev = vp[b * H + j], g = vdh[b * H + j];
      want_h[b * H + j] = (1 - z) * n + z * prev;
      const double dn = g * (1 - z) * (1 - n * n), dz = g * (prev - n) * z * (1 - z), dr = dn * hh(2) * r * (1 - r);
      want_dgx[b * 3 * H + j] += dr;
      want_dgx[b * 3 * H + H + j] += dz;
      want_dgx[b * 3 * H + 2 * H + j] += dn;
      want_dgh[b * 3 * H + j] += dr;
      want_dgh[b * 3 * H + H + j] += dz;
      want_dgh[b * 3 * H + 2 * H + j] += dn * r;
      want_dhp[b * H + j] += g * z;
    }
  expect_close(h.to_vector(), want_h, kCellAtol, kCellRtol, "h");
  expect_close(dgx.to_vector(), want_dgx, kCellAtol, kCellRtol, "dgates_x");
  expect_close(dgh.to_vector(), want_dgh, kCellAtol, kCellRtol, "dgates_h");
  expect_close(dhp.to_vector(), want_dhp, kCellAtol, kCellRtol, "dh_prev");
}

// Saturated gates (pre-activations of +-100) give 0/1 gates (to within 2e-35: sigmoid's argument is
// capped at 80, where exp still fits a float) and finite states and gradients, not NaN or inf.
TEST_P(RnnCell, SaturatedGatesStayFinite) {
  const int64_t B = 2, H = 3;
  std::vector<float> big(B * 4 * H);
  for (size_t i = 0; i < big.size(); i++) big[i] = (i % 2 ? 100.0f : -100.0f);
  Tensor gx = Tensor::from_vector(big, {B, 4 * H}), gh = Tensor::zeros({B, 4 * H}), cp = Tensor::ones({B, H});
  Tensor h = Tensor::empty({B, H}), c = Tensor::empty({B, H}), gates = Tensor::empty({B, 4 * H});
  ops::lstm_cell_forward(h, c, gates, gx, gh, cp);
  std::vector<float> act = gates.to_vector();
  for (size_t k = 0; k < act.size(); k++) {
    const bool g_gate = (k % (4 * H)) / H == 2;  // tanh: -1 or 1; the sigmoids: 0 or 1
    const float want = big[k] > 0 ? 1.0f : (g_gate ? -1.0f : 0.0f);
    EXPECT_NEAR(act[k], want, 2e-35) << k;
  }
  Tensor dgx = Tensor::zeros({B, 4 * H}), dgh = Tensor::zeros({B, 4 * H}), dcp = Tensor::zeros({B, H});
  ops::lstm_cell_backward(dgx, dgh, dcp, gates, cp, c, Tensor::ones({B, H}), Tensor::ones({B, H}));
  for (const Tensor& t : {h, c, dgx, dcp})
    for (float v : t.to_vector()) EXPECT_TRUE(std::isfinite(v)) << v;
}

// ---- gradchecks ----------------------------------------------------------------------------------

// Each output alone (the other's gradient then arrives zero-filled) and both with different weights.
TEST_P(RnnCell, LstmGradcheck) {
  Generator gen(103);
  const int64_t B = 3, H = 5;
  std::vector<Tensor> in = {randn({B, 4 * H}, gen).requires_grad_(), randn({B, 4 * H}, gen).requires_grad_(),
                            randn({B, H}, gen).requires_grad_()};
  auto cell = [](const std::vector<Tensor>& t) { return lstm_cell(t[0], t[1], t[2]); };
  EXPECT_EQ(gradcheck([&](const std::vector<Tensor>& t) { return cell(t).h; }, in), "") << "h alone";
  EXPECT_EQ(gradcheck([&](const std::vector<Tensor>& t) { return cell(t).c; }, in), "") << "c alone";
  EXPECT_EQ(gradcheck(
                [&](const std::vector<Tensor>& t) {
                  LSTMCellOutput out = cell(t);
                  return out.h * out.c + out.c;
                },
                in),
            "")
      << "h and c together";
}

TEST_P(RnnCell, GruGradcheck) {
  Generator gen(104);
  const int64_t B = 3, H = 5;
  std::vector<Tensor> in = {randn({B, 3 * H}, gen).requires_grad_(), randn({B, 3 * H}, gen).requires_grad_(),
                            randn({B, H}, gen).requires_grad_()};
  EXPECT_EQ(gradcheck([](const std::vector<Tensor>& t) { return gru_cell(t[0], t[1], t[2]); }, in), "");
}

// Two steps of one LSTM layer and one GRU layer built from the functional pieces, with every
// parameter an input of the checked function (gradcheck clones its inputs, so a module's own
// parameters cannot be perturbed through it): the recurrence, h feeding the next step's GEMM,
// and the weight and bias gradients summed over steps.
TEST_P(RnnCell, TwoStepsWithParametersGradcheck) {
  Generator gen(105);
  const int64_t B = 2, I = 3, H = 4;
  auto step = [](const Tensor& t, int64_t i) { return reshape(slice(t, 0, i, i + 1), {t.size(1), t.size(2)}); };
  std::vector<Tensor> lstm_in = {randn({2, B, I}, gen).requires_grad_(),        randn({4 * H, I}, gen, 0.5f).requires_grad_(),
                                 randn({4 * H, H}, gen, 0.5f).requires_grad_(), randn({4 * H}, gen, 0.5f).requires_grad_(),
                                 randn({4 * H}, gen, 0.5f).requires_grad_(),    randn({B, H}, gen).requires_grad_(),
                                 randn({B, H}, gen).requires_grad_()};
  EXPECT_EQ(gradcheck(
                [&](const std::vector<Tensor>& t) {
                  Tensor gates_x = linear(t[0], t[1], t[3]), h = t[5], c = t[6];
                  for (int64_t s = 0; s < 2; s++) {
                    LSTMCellOutput out = lstm_cell(step(gates_x, s), linear(h, t[2], t[4]), c);
                    h = out.h;
                    c = out.c;
                  }
                  return h + c;
                },
                lstm_in),
            "");
  std::vector<Tensor> gru_in = {randn({2, B, I}, gen).requires_grad_(),        randn({3 * H, I}, gen, 0.5f).requires_grad_(),
                                randn({3 * H, H}, gen, 0.5f).requires_grad_(), randn({3 * H}, gen, 0.5f).requires_grad_(),
                                randn({3 * H}, gen, 0.5f).requires_grad_(),    randn({B, H}, gen).requires_grad_()};
  EXPECT_EQ(gradcheck(
                [&](const std::vector<Tensor>& t) {
                  Tensor gates_x = linear(t[0], t[1], t[3]), h = t[5];
                  for (int64_t s = 0; s < 2; s++) h = gru_cell(step(gates_x, s), linear(h, t[2], t[4]), h);
                  return h;
                },
                gru_in),
            "");
}

// The whole module (two layers, batch_first for the GRU) against finite differences in its input
// and initial states.
TEST(Rnn, ModuleGradcheckInputsAndStates) {
  Generator gen(106);
  const int64_t T = 3, B = 2, I = 3, H = 4;
  auto lstm = std::make_shared<LSTM>(I, H, 2, false, 0.0f, true, &gen);
  std::vector<Tensor> in = {randn({T, B, I}, gen).requires_grad_(), randn({2, B, H}, gen).requires_grad_(),
                            randn({2, B, H}, gen).requires_grad_()};
  EXPECT_EQ(gradcheck(
                [&](const std::vector<Tensor>& t) {
                  RNNOutput out = lstm->forward(t[0], t[1], t[2]);
                  return sum(out.output) + sum(out.h_n * out.c_n);
                },
                in),
            "");
  auto gru = std::make_shared<GRU>(I, H, 2, true, 0.0f, true, &gen);
  std::vector<Tensor> gru_in = {randn({B, T, I}, gen).requires_grad_(), randn({2, B, H}, gen).requires_grad_()};
  EXPECT_EQ(gradcheck(
                [&](const std::vector<Tensor>& t) {
                  RNNOutput out = gru->forward(t[0], t[1]);
                  return sum(out.output) + sum(out.h_n * out.h_n);
                },
                gru_in),
            "");
}

// ---- PyTorch parity ------------------------------------------------------------------------------

namespace {

std::string rnn_fixture_path() {
  std::string here = __FILE__;  // "tests/test_rnn.cpp": tests are built from the repository root
  return here.substr(0, here.find_last_of('/') + 1) + "reference/rnn_tiny.safetensors";
}

// Tolerances, as relative error per tensor ||ours - ref|| / ||ref|| against PyTorch in float64,
// derived from f32's unit roundoff u = 2^-24 and the length of the computation: each step of a layer
// is a GEMM of reduction length K + 1 (K = max(I, H) = 7, plus the bias) and about ten rounded
// operations in the cell (two of them exp or tanh at ~2 ulp), so a step adds at most (K + 11) u of
// relative error, and the recurrence carries it through T = 6 steps of L = 2 layers:
// T L (K + 11) u = 216 u = 1.3e-5 for the outputs and final states. The backward walks the same
// chain once more and sums the weight gradients over T B = 18 rows: 2 T L (K + 11) u + T B u, 2.7e-5.
// (PyTorch's own float32 lands at 7e-8 and 1.6e-7, the script prints; a wrong gate order or a
// missed term misses by more than 1e-2.)
constexpr double kOutputTolerance = 1.3e-5;
constexpr double kGradientTolerance = 2.7e-5;

struct RnnFixture {
  SafetensorsData data = load_safetensors(rnn_fixture_path());
  const Tensor& at(const std::string& name) const { return data.at(name); }
  int64_t meta(const char* key) const { return std::stoll(data.metadata.at(key)); }
};

// Loads `prefix`.<name> into every parameter and runs the weighted-sum loss; checks the outputs,
// final states and every gradient.
template <class M>
void check_parity(const RnnFixture& f, M& model, const std::string& prefix, bool with_state) {
  for (auto& [name, p] : model.named_parameters()) p.copy_(f.at(prefix + "." + name));
  Tensor x = f.at(prefix + ".x").clone().requires_grad_();
  Tensor h0, c0;
  if (with_state) {
    h0 = f.at(prefix + ".h0").clone().requires_grad_();
    c0 = f.at(prefix + ".c0").clone().requires_grad_();
  }
  RNNOutput out = model.forward(x, h0, c0);
  ASSERT_EQ(out.output.shape(), f.at(prefix + ".output").shape());
  EXPECT_LT(rel_error(out.output, f.at(prefix + ".output")), kOutputTolerance) << prefix << ".output";
  EXPECT_LT(rel_error(out.h_n, f.at(prefix + ".h_n")), kOutputTolerance) << prefix << ".h_n";
  Tensor loss = sum(out.output * f.at(prefix + ".w_output")) + sum(out.h_n * f.at(prefix + ".w_h_n"));
  if (out.c_n.defined()) {
    EXPECT_LT(rel_error(out.c_n, f.at(prefix + ".c_n")), kOutputTolerance) << prefix << ".c_n";
    loss = loss + sum(out.c_n * f.at(prefix + ".w_c_n"));
  }
  backward(loss);
  for (auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_LT(rel_error(p.grad(), f.at(prefix + ".grad." + name)), kGradientTolerance) << prefix << ".grad." << name;
  }
  EXPECT_LT(rel_error(x.grad(), f.at(prefix + ".grad.x")), kGradientTolerance) << prefix << ".grad.x";
  if (with_state) {
    EXPECT_LT(rel_error(h0.grad(), f.at(prefix + ".grad.h0")), kGradientTolerance) << prefix << ".grad.h0";
    EXPECT_LT(rel_error(c0.grad(), f.at(prefix + ".grad.c0")), kGradientTolerance) << prefix << ".grad.c0";
  }
}

}  // namespace

TEST(RnnParity, LstmMatchesPyTorch) {
  RnnFixture f;
  LSTM lstm(f.meta("input_size"), f.meta("hidden_size"), f.meta("num_layers"));
  check_parity(f, lstm, "lstm", true);
}

TEST(RnnParity, GruBatchFirstMatchesPyTorch) {
  RnnFixture f;
  GRU gru(f.meta("input_size"), f.meta("hidden_size"), f.meta("num_layers"), /*batch_first=*/true);
  check_parity(f, gru, "gru", false);
}

// ---- module semantics ----------------------------------------------------------------------------

TEST(Rnn, ParameterNamesShapesAndInit) {
  Generator gen(107);
  LSTM lstm(5, 7, 2, false, 0.0f, true, &gen);
  NamedTensors params = lstm.named_parameters();
  const std::vector<std::pair<std::string, Shape>> want = {
      {"weight_ih_l0", {28, 5}}, {"weight_hh_l0", {28, 7}}, {"bias_ih_l0", {28}}, {"bias_hh_l0", {28}},
      {"weight_ih_l1", {28, 7}}, {"weight_hh_l1", {28, 7}}, {"bias_ih_l1", {28}}, {"bias_hh_l1", {28}}};
  ASSERT_EQ(params.size(), want.size());
  const float bound = 1.0f / std::sqrt(7.0f);
  for (size_t k = 0; k < want.size(); k++) {
    EXPECT_EQ(params[k].first, want[k].first);
    EXPECT_EQ(params[k].second.shape(), want[k].second) << want[k].first;
    float lo = 1, hi = -1;
    for (float v : params[k].second.to_vector()) lo = std::min(lo, v), hi = std::max(hi, v);
    EXPECT_GE(lo, -bound) << want[k].first;
    EXPECT_LT(hi, bound) << want[k].first;
    EXPECT_LT(lo, -0.5f * bound) << want[k].first << " is not spread over the interval";
    EXPECT_GT(hi, 0.5f * bound) << want[k].first << " is not spread over the interval";
  }
  GRU gru(5, 7, 1, false, 0.0f, false, &gen);
  NamedTensors gru_params = gru.named_parameters();
  ASSERT_EQ(gru_params.size(), 2u);  // no biases
  EXPECT_EQ(gru_params[0].second.shape(), (Shape{21, 5}));
  // The same seed gives the same weights.
  Generator a(9), b(9);
  EXPECT_EQ(LSTM(3, 4, 1, false, 0.0f, true, &a).layer(0).weight_hh.to_vector(),
            LSTM(3, 4, 1, false, 0.0f, true, &b).layer(0).weight_hh.to_vector());
}

// batch_first only changes the layout: the same weights on the transposed input give the
// transposed output and the same final states.
TEST(Rnn, BatchFirstIsTheTransposedLayout) {
  Generator gen(108), a(5), b(5);
  LSTM time_major(3, 4, 2, false, 0.0f, true, &a), batch_major(3, 4, 2, true, 0.0f, true, &b);
  Tensor x = randn({5, 2, 3}, gen);
  RNNOutput t = time_major.forward(x), bf = batch_major.forward(x.transpose(0, 1).contiguous());
  EXPECT_EQ(bf.output.shape(), (Shape{2, 5, 4}));
  EXPECT_EQ(bf.output.transpose(0, 1).contiguous().to_vector(), t.output.to_vector());
  EXPECT_EQ(bf.h_n.to_vector(), t.h_n.to_vector());
  EXPECT_EQ(bf.c_n.to_vector(), t.c_n.to_vector());
  // h_n of the last layer is the output's last step.
  EXPECT_EQ(t.h_n.select(0, 1).contiguous().to_vector(), t.output.select(0, 4).contiguous().to_vector());
}

// Dropout acts between layers only: a one-layer module ignores it, a two-layer one in training
// differs from itself in evaluation, which is deterministic.
TEST(Rnn, DropoutBetweenLayersOnly) {
  Generator gen(109), a(6), b(6);
  Tensor x = randn({4, 3, 2}, gen);
  GRU one(2, 5, 1, false, 0.5f, true, &a), one_plain(2, 5, 1, false, 0.0f, true, &b);
  EXPECT_EQ(one.forward(x).output.to_vector(), one_plain.forward(x).output.to_vector());
  Generator c(7);
  LSTM two(2, 5, 2, false, 0.5f, true, &c);
  std::vector<float> trained = two.forward(x).output.to_vector();
  two.eval();
  std::vector<float> evaluated = two.forward(x).output.to_vector();
  EXPECT_NE(trained, evaluated);
  EXPECT_EQ(evaluated, two.forward(x).output.to_vector());
}

// ---- errors --------------------------------------------------------------------------------------

TEST(Rnn, BadInputsAreNamed) {
  LSTM lstm(5, 7, 2);
  EXPECT_ERROR_MENTIONS(lstm.forward(Tensor::zeros({6, 3, 4})), "LSTM", "x", "(6, 3, 4)", "input_size 5");
  EXPECT_ERROR_MENTIONS(lstm.forward(Tensor::zeros({6, 5})), "LSTM", "(6, 5)", "(T, B, input_size)");
  EXPECT_ERROR_MENTIONS(lstm.forward(Tensor::zeros({0, 3, 5})), "LSTM", "must not be empty");
  EXPECT_ERROR_MENTIONS(lstm.forward(Tensor::zeros({6, 3, 5}), Tensor::zeros({1, 3, 7})), "LSTM", "h0", "(1, 3, 7)",
                        "(2, 3, 7)");
  EXPECT_ERROR_MENTIONS(lstm.forward(Tensor::zeros({6, 3, 5}), Tensor(), Tensor::zeros({2, 4, 7})), "c0", "(2, 4, 7)",
                        "(2, 3, 7)");
  GRU gru(5, 7, 1, true);
  EXPECT_ERROR_MENTIONS(gru.forward(Tensor::zeros({3, 6, 4})), "GRU", "(B, T, input_size) with batch_first");
  EXPECT_ERROR_MENTIONS(gru.forward(Tensor::zeros({3, 6, 5}), Tensor(), Tensor::zeros({1, 3, 7})), "GRU", "c0",
                        "no cell state");
  EXPECT_ERROR_MENTIONS(LSTM(0, 7), "LSTM", "input_size", "positive");
  EXPECT_ERROR_MENTIONS(GRU(5, 7, 0), "GRU", "num_layers", "positive");
  EXPECT_ERROR_MENTIONS(LSTM(5, 7, 2, false, 1.0f), "LSTM", "dropout", "[0, 1)");
}

TEST_P(RnnCell, BadOperandsAreNamed) {
  Tensor h = Tensor::empty({3, 5}), c = Tensor::empty({3, 5}), gates = Tensor::empty({3, 20});
  Tensor gx = Tensor::zeros({3, 20}), gh = Tensor::zeros({3, 20}), cp = Tensor::zeros({3, 5});
  Tensor odd = Tensor::zeros({3, 18});
  EXPECT_ERROR_MENTIONS(ops::lstm_cell_forward(h, c, gates, odd, gh, cp), "lstm_cell", "gates_x", "(3, 18)",
                        "multiple of 4");
  Tensor gh_bad = Tensor::zeros({2, 20});
  EXPECT_ERROR_MENTIONS(ops::lstm_cell_forward(h, c, gates, gx, gh_bad, cp), "lstm_cell", "gates_h", "(2, 20)",
                        "(3, 20)");
  Tensor cp_bad = Tensor::zeros({3, 4});
  EXPECT_ERROR_MENTIONS(lstm_cell(gx, gh, cp_bad), "lstm_cell", "c_prev", "(3, 4)", "(3, 5)");
  EXPECT_ERROR_MENTIONS(lstm_cell(gx, Tensor(), cp), "lstm_cell", "gates_h", "undefined");
  EXPECT_ERROR_MENTIONS(lstm_cell(gx.to(DType::BF16), gh, cp), "lstm_cell", "bf16", "f32", "must match");
  Tensor hp = Tensor::zeros({3, 5}), g3 = Tensor::zeros({3, 15});
  EXPECT_ERROR_MENTIONS(gru_cell(Tensor::zeros({3, 16}), g3, hp), "gru_cell", "gates_x", "multiple of 3");
  EXPECT_ERROR_MENTIONS(gru_cell(g3, g3, Tensor::zeros({3, 5, 1})), "gru_cell", "h_prev", "2 dimensions");
  Tensor dgx = Tensor::zeros({3, 16}), none;
  EXPECT_ERROR_MENTIONS(ops::gru_cell_backward(dgx, none, none, Tensor::zeros({3, 20}), hp, hp), "gru_cell_backward",
                        "dgates_x", "(3, 16)", "(3, 15)");
}
