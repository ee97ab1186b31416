// The blockwise MLP (autograd/functions/blockwise_mlp.h, ops/blockwise_mlp.h) against the unfused
// block half it replaces (layernorm, linear_gelu, linear_residual): the forward and the input
// gradient bit for bit, every parameter gradient within the bound of a reordered sum; finite
// differences; its use in TransformerBlock and GPT; its errors; ./train --blockwise against
// --blockwise off, the plan's line and the flag's bad values.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/functions/blockwise_mlp.h"
#include "autograd/functions/layernorm.h"
#include "autograd/functions/matmul.h"
#include "autograd/gradcheck.h"
#include "nn/block.h"
#include "ops/blockwise_mlp.h"
#include "nn/gpt.h"
#include "programs/lib/run_plan.h"
#include "programs/lib/text_options.h"
#include "tests/program_test_util.h"
#include "tests/test_util.h"

using namespace tg;
using namespace tg::test;

namespace {

Tensor leaf(Tensor t) { return t.requires_grad_(); }

// The parameters of one block half, PyTorch-like scales, drawn from `gen`.
struct Half {
  Tensor ln_w, ln_b, fc_w, fc_b, proj_w, proj_b;
  Half(int64_t C, int64_t H, Generator& gen) {
    auto scaled = [&](Shape shape, float scale, float shift = 0.0f) {
      std::vector<float> v = Tensor::randn(shape, &gen).to_vector();
      for (float& e : v) e = shift + scale * e;
      return leaf(Tensor::from_vector(v, shape));
    };
    ln_w = scaled({C}, 0.5f, 1.0f);
    ln_b = scaled({C}, 0.1f);
    fc_w = scaled({H, C}, 1.0f / std::sqrt(static_cast<float>(C)));
    fc_b = scaled({H}, 0.1f);
    proj_w = scaled({C, H}, 1.0f / std::sqrt(static_cast<float>(H)));
    proj_b = scaled({C}, 0.1f);
  }
  MlpWeights weights() const {
    MlpWeights w;
    w.ln_weight = ln_w, w.ln_bias = ln_b, w.fc_weight = fc_w, w.fc_bias = fc_b, w.proj_weight = proj_w,
    w.proj_bias = proj_b;
    return w;
  }
  std::vector<Tensor> all() const { return {ln_w, ln_b, fc_w, fc_b, proj_w, proj_b}; }
};

// x + c_proj(gelu(c_fc(layernorm(x)))) as the unfused block computes it.
Tensor unfused(const Tensor& x, const Half& p) {
  return linear_residual(linear_gelu(layernorm(x, p.ln_w, p.ln_b), p.fc_w, p.fc_b), p.proj_w, p.proj_b, x);
}

std::vector<float> grad_of(const Tensor& t) { return t.grad().to_vector(); }

void zero_grads(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors) t.grad().zero_();
}

// S[p][q] = sum over rows r of |a[r][p] * b[r][q]|, a (R, P) and b (R, Q) row-major; b empty means
// all ones (a bias gradient, the column sums of a).
std::vector<double> abs_product_sums(const std::vector<double>& a, const std::vector<double>& b, int64_t R, int64_t P,
                                     int64_t Q) {
  std::vector<double> s(static_cast<size_t>(P * Q), 0.0);
  for (int64_t r = 0; r < R; r++)
    for (int64_t p = 0; p < P; p++)
      for (int64_t q = 0; q < Q; q++)
        s[p * Q + q] += std::fabs(a[r * P + p] * (b.empty() ? 1.0 : b[r * Q + q]));
  return s;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// |got - want| <= 2 gamma_K S elementwise, gamma_K = K u / (1 - K u), u = 2^-24: any two orders of
// summing the same K f32 terms are each within gamma_K S of the exact sum (Higham, Accuracy and
// Stability, 4.2; fused multiply-adds only lower it), S the sum of the terms' magnitudes.
void expect_reordered_sum(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& S,
                          int64_t K, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(S.size(), want.size()) << what;
  const double u = std::ldexp(1.0, -24), gamma = K * u / (1 - K * u);
  int reported = 0;
  for (size_t i = 0; i < got.size(); i++)
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= 2 * gamma * S[i]) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: blockwise " << got[i] << ", unfused " << want[i] << ", bound "
                    << 2 * gamma * S[i];
}

// The magnitudes of the terms of every parameter gradient's sum over the rows, from the unfused
// forward's values, in double: the per-row factors of each sum (dy and the hidden for c_proj, the
// pre-activation's gradient and the normalised rows for c_fc, the normalised input's gradient and
// x-hat for the LayerNorm).
struct TermMagnitudes {
  std::vector<double> proj_w, proj_b, fc_w, fc_b, ln_w, ln_b;
};

TermMagnitudes term_magnitudes(const Tensor& x, const Half& p, const Tensor& dy, int64_t R, int64_t C, int64_t H) {
  NoGrad no_grad;
  const std::vector<double> xs = to_double(x.to_vector()), dys = to_double(dy.to_vector());
  const std::vector<double> lnw = to_double(p.ln_w.to_vector()), lnb = to_double(p.ln_b.to_vector());
  const std::vector<double> fcw = to_double(p.fc_w.to_vector()), fcb = to_double(p.fc_b.to_vector());
  const std::vector<double> pw = to_double(p.proj_w.to_vector());
  std::vector<double> xhat(R * C), norm(R * C), pre(R * H), hidden(R * H), dpre(R * H), dnormalized(R * C);
  const double k = std::sqrt(2.0 / M_PI);
  for (int64_t r = 0; r < R; r++) {
    double mean = 0, var = 0;
    for (int64_t c = 0; c < C; c++) mean += xs[r * C + c] / C;
    for (int64_t c = 0; c < C; c++) var += (xs[r * C + c] - mean) * (xs[r * C + c] - mean) / C;
    for (int64_t c = 0; c < C; c++) {
      xhat[r * C + c] = (xs[r * C + c] - mean) / std::sqrt(var + 1e-5);
      norm[r * C + c] = xhat[r * C + c] * lnw[c] + lnb[c];
    }
    for (int64_t h = 0; h < H; h++) {
      double u = fcb[h];
      for (int64_t c = 0; c < C; c++) u += norm[r * C + c] * fcw[h * C + c];
      const double t = std::tanh(k * (u + 0.044715 * u * u * u));
      pre[r * H + h] = u;
      hidden[r * H + h] = 0.5 * u * (1 + t);
      double dh = 0;
      for (int64_t c = 0; c < C; c++) dh += dys[r * C + c] * pw[c * H + h];
      const double gelu_grad = 0.5 * (1 + t) + 0.5 * u * (1 - t * t) * k * (1 + 3 * 0.044715 * u * u);
      dpre[r * H + h] = gelu_grad * dh;
    }
    for (int64_t c = 0; c < C; c++) {
      double dn = 0;
      for (int64_t h = 0; h < H; h++) dn += dpre[r * H + h] * fcw[h * C + c];
      dnormalized[r * C + c] = dn;  // the gradient of the LayerNorm's output
    }
  }
  (void)lnb;
  TermMagnitudes m;
  m.proj_w = abs_product_sums(dys, hidden, R, C, H);
  m.proj_b = abs_product_sums(dys, {}, R, C, 1);
  m.fc_w = abs_product_sums(dpre, norm, R, H, C);
  m.fc_b = abs_product_sums(dpre, {}, R, H, 1);
  // dln_w[c] = sum_r d normalized[r][c] x-hat[r][c]; dln_b[c] = sum_r d normalized[r][c].
  m.ln_w.assign(C, 0.0);
  m.ln_b.assign(C, 0.0);
  for (int64_t r = 0; r < R; r++)
    for (int64_t c = 0; c < C; c++) {
      m.ln_w[c] += std::fabs(dnormalized[r * C + c] * xhat[r * C + c]);
      m.ln_b[c] += std::fabs(dnormalized[r * C + c]);
    }
  return m;
}

struct Case {
  Shape shape;  // x (..., C)
  int64_t H, chunk;
  const char* why;
};

}  // namespace

// Rows not a multiple of the chunk, a chunk of one row, a chunk equal to the rows and one larger
// than the rows; at one thread and at two (the chunks then shared between threads, each thread's
// weight-gradient partial added in turn).
TEST(BlockwiseMlp, ForwardAndEveryGradientEqualTheUnfusedBlock) {
  const std::vector<Case> cases = {{{3, 7, 12}, 48, 5, "21 rows in chunks of 5"},
                                   {{3, 7, 12}, 48, 1, "chunks of one row"},
                                   {{21, 12}, 48, 21, "one chunk of every row"},
                                   {{2, 9, 10}, 40, 64, "a chunk larger than the rows"},
                                   {{5, 13, 16}, 64, 14, "65 rows in chunks of 14 (the AVX-512 tile)"}};
  const int threads_before = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(c.why) + ", " + std::to_string(threads) + " thread(s)");
      Generator gen(21);
      const int64_t C = c.shape.back(), H = c.H;
      int64_t R = 1;
      for (int64_t d : c.shape) R *= d;
      R /= C;
      Tensor x = leaf(Tensor::randn(c.shape, &gen));
      Half p(C, H, gen);
      Tensor dy = Tensor::randn(c.shape, &gen);
      std::vector<Tensor> all = p.all();
      all.push_back(x);

      Tensor want = unfused(x, p);
      backward(want, dy);
      std::vector<std::vector<float>> want_grads;
      for (const Tensor& t : all) want_grads.push_back(grad_of(t));
      zero_grads(all);
      Tensor got = blockwise_mlp(x, p.weights(), c.chunk);
      backward(got, dy);

      // Rows are independent: each chunk runs the unfused path's kernels on the same rows, so the
      // output and the input gradient (residual plus LayerNorm backward, per row) are its bits.
      EXPECT_EQ(got.to_vector(), want.to_vector());
      EXPECT_EQ(grad_of(x), want_grads[6]);
      // The parameter gradients are sums over the R rows, in another order.
      TermMagnitudes S = term_magnitudes(x, p, dy, R, C, H);
      expect_reordered_sum(grad_of(p.ln_w), want_grads[0], S.ln_w, R, "ln weight");
      expect_reordered_sum(grad_of(p.ln_b), want_grads[1], S.ln_b, R, "ln bias");
      expect_reordered_sum(grad_of(p.fc_w), want_grads[2], S.fc_w, R, "c_fc weight");
      expect_reordered_sum(grad_of(p.fc_b), want_grads[3], S.fc_b, R, "c_fc bias");
      expect_reordered_sum(grad_of(p.proj_w), want_grads[4], S.proj_w, R, "c_proj weight");
      expect_reordered_sum(grad_of(p.proj_b), want_grads[5], S.proj_b, R, "c_proj bias");

      // The node runs its backward in chunks of at least 512 rows (blockwise_mlp_backward_chunk_rows),
      // one chunk at these sizes: the ops entry at the case's own chunk covers the accumulation
      // across chunks and threads.
      ops::MlpParams params;
      params.ln_weight = p.ln_w.detach(), params.ln_bias = p.ln_b.detach();
      params.fc_weight = p.fc_w.detach(), params.fc_bias = p.fc_b.detach();
      params.proj_weight = p.proj_w.detach(), params.proj_bias = p.proj_b.detach();
      ops::MlpGrads g;
      g.x = Tensor::zeros({R, C});
      g.ln_weight = Tensor::zeros({C}), g.ln_bias = Tensor::zeros({C});
      g.fc_weight = Tensor::zeros({H, C}), g.fc_bias = Tensor::zeros({H});
      g.proj_weight = Tensor::zeros({C, H}), g.proj_bias = Tensor::zeros({C});
      ops::blockwise_mlp_backward(g, dy.view({R, C}), x.detach().view({R, C}), params, c.chunk);
      EXPECT_EQ(g.x.to_vector(), want_grads[6]);
      expect_reordered_sum(g.ln_weight.to_vector(), want_grads[0], S.ln_w, R, "ops: ln weight");
      expect_reordered_sum(g.ln_bias.to_vector(), want_grads[1], S.ln_b, R, "ops: ln bias");
      expect_reordered_sum(g.fc_weight.to_vector(), want_grads[2], S.fc_w, R, "ops: c_fc weight");
      expect_reordered_sum(g.fc_bias.to_vector(), want_grads[3], S.fc_b, R, "ops: c_fc bias");
      expect_reordered_sum(g.proj_weight.to_vector(), want_grads[4], S.proj_w, R, "ops: c_proj weight");
      expect_reordered_sum(g.proj_bias.to_vector(), want_grads[5], S.proj_b, R, "ops: c_proj bias");
    }
  }
  omp_set_num_threads(threads_before);
}

TEST(BlockwiseMlp, TheBackwardRunsChunksOfAtLeast512Rows) {
  EXPECT_EQ(ops::blockwise_mlp_backward_chunk_rows(1), 512);
  EXPECT_EQ(ops::blockwise_mlp_backward_chunk_rows(168), 512);
  EXPECT_EQ(ops::blockwise_mlp_backward_chunk_rows(512), 512);
  EXPECT_EQ(ops::blockwise_mlp_backward_chunk_rows(1000), 1000);
}

// The terms' magnitudes bound a reordering only if the gradients are of their order: a function
// that wrote nothing would fail the comparison above, and one that summed each chunk twice would
// miss by far more than the bound (checked here on one case).
TEST(BlockwiseMlp, TheBoundIsTightEnoughToCatchALostChunk) {
  Generator gen(22);
  const int64_t R = 21, C = 12, H = 48;
  Tensor x = leaf(Tensor::randn({R, C}, &gen));
  Half p(C, H, gen);
  Tensor dy = Tensor::randn({R, C}, &gen);
  backward(blockwise_mlp(x, p.weights(), 5), dy);
  std::vector<float> whole = grad_of(p.fc_w);
  zero_grads(p.all());
  // The last chunk's rows (20) left out: the gradient of 20 rows differs from that of 21 by one
  // row's terms, far above 2 gamma_K S.
  Tensor x20 = x.detach().narrow(0, 0, 20).contiguous().requires_grad_();
  backward(blockwise_mlp(x20, p.weights(), 5), dy.narrow(0, 0, 20).contiguous());
  TermMagnitudes S = term_magnitudes(x, p, dy, R, C, H);
  const double u = std::ldexp(1.0, -24), gamma = R * u / (1 - R * u);
  int beyond = 0;
  std::vector<float> partial = grad_of(p.fc_w);
  for (size_t i = 0; i < whole.size(); i++) beyond += std::fabs(partial[i] - whole[i]) > 2 * gamma * S.fc_w[i];
  EXPECT_GT(beyond, static_cast<int>(whole.size()) / 2);
}

TEST(BlockwiseMlp, GradCheck) {
  Generator gen(23);
  const int64_t C = 5, H = 7;
  Tensor x = leaf(Tensor::randn({2, 3, C}, &gen));
  Half p(C, H, gen);
  auto fn = [](const std::vector<Tensor>& in) {
    MlpWeights w;
    w.ln_weight = in[1], w.ln_bias = in[2], w.fc_weight = in[3], w.fc_bias = in[4], w.proj_weight = in[5],
    w.proj_bias = in[6];
    return blockwise_mlp(in[0], w, 4);  // 6 rows: a chunk of 4 and one of 2
  };
  EXPECT_EQ(gradcheck(fn, {x, p.ln_w, p.ln_b, p.fc_w, p.fc_b, p.proj_w, p.proj_b}), "");
}

// Without biases or a LayerNorm weight (GPT's bias = false): the undefined parameters get no
// gradient and the rest still match the unfused path.
TEST(BlockwiseMlp, UndefinedParametersAreNone) {
  Generator gen(24);
  const int64_t C = 4, H = 8;
  Tensor x = leaf(Tensor::randn({5, C}, &gen));
  Half p(C, H, gen);
  MlpWeights w;
  w.fc_weight = p.fc_w, w.proj_weight = p.proj_w;
  Tensor got = blockwise_mlp(x, w, 2);
  Tensor want = linear_residual(linear_gelu(layernorm(x, Tensor(), Tensor()), p.fc_w, Tensor()), p.proj_w, Tensor(), x);
  EXPECT_EQ(got.to_vector(), want.to_vector());
  auto fn = [](const std::vector<Tensor>& in) {
    MlpWeights w;
    w.fc_weight = in[1], w.proj_weight = in[2];
    return blockwise_mlp(in[0], w, 2);
  };
  EXPECT_EQ(gradcheck(fn, {x, p.fc_w, p.proj_w}), "");
}

TEST(BlockwiseMlp, BadInputIsNamed) {
  Generator gen(25);
  Tensor x = Tensor::randn({4, 6}, &gen);
  Half p(6, 24, gen);
  MlpWeights w = p.weights();
  EXPECT_ERROR_MENTIONS(blockwise_mlp(x, w, 0), "blockwise_mlp", "chunk_rows must be positive, found 0");
  MlpWeights wide = w;
  wide.proj_weight = Tensor::randn({6, 25}, &gen);
  EXPECT_ERROR_MENTIONS(blockwise_mlp(x, wide, 2), "blockwise_mlp", "proj_weight", "(6, 25)", "(6, 24)");
  EXPECT_ERROR_MENTIONS(blockwise_mlp(Tensor::randn({4, 5}, &gen), w, 2), "blockwise_mlp", "fc_weight", "(24, 5)");
  MlpWeights bias = w;
  bias.fc_bias = Tensor::randn({23}, &gen);
  EXPECT_ERROR_MENTIONS(blockwise_mlp(x, bias, 2), "blockwise_mlp", "fc_bias", "(23)", "(24)");
  MlpWeights none = w;
  none.fc_weight = Tensor();
  EXPECT_ERROR_MENTIONS(blockwise_mlp(x, none, 2), "blockwise_mlp", "fc_weight");
}

// In a GPT: the loss and every gradient upstream of the blockwise sums (embeddings, attention,
// ln_1, ln_f) are the unfused ones bit for bit, since the blocks' outputs and input gradients are;
// the MLP and ln_2 gradients are sums over the rows (the function's own test bounds them).
TEST(BlockwiseMlp, GptLossAndUpstreamGradientsAreTheUnfusedOnes) {
  GPTConfig c;
  c.vocab_size = 13, c.block_size = 9, c.n_layer = 2, c.n_head = 2, c.n_embd = 8;
  GPT model(c, 31);
  Generator gen(26);
  std::vector<int32_t> ids(3 * 9), targets(3 * 9);
  for (size_t i = 0; i < ids.size(); i++) {
    ids[i] = static_cast<int32_t>(gen.uniform() * 13) % 13;
    targets[i] = static_cast<int32_t>(gen.uniform() * 13) % 13;
  }
  Tensor idx = Tensor::from_ints(ids, {3, 9}), tgt = Tensor::from_ints(targets, {3, 9});
  auto run = [&](int64_t chunk) {
    model.set_mlp_chunk_rows(chunk);
    for (const Tensor& p : model.parameters())
      if (p.grad().defined()) p.grad().zero_();
    Tensor loss = model.loss(model.forward(idx), tgt);
    backward(loss);
    std::vector<std::pair<std::string, std::vector<float>>> grads;
    for (const auto& [name, p] : model.named_parameters()) grads.push_back({name, grad_of(p)});
    return std::make_pair(loss.item(), grads);
  };
  auto want = run(0);
  auto got = run(5);  // 27 rows: chunks of 5 and a last of 2
  EXPECT_EQ(got.first, want.first);
  int compared = 0;
  for (size_t i = 0; i < want.second.size(); i++) {
    const std::string& name = want.second[i].first;
    if (name.find(".mlp.") != std::string::npos || name.find(".ln_2.") != std::string::npos) continue;
    EXPECT_EQ(got.second[i].second, want.second[i].second) << name;
    compared++;
  }
  EXPECT_GT(compared, 10);
  EXPECT_EQ(model.h->begin()->get()->mlp_chunk_rows(), 5);
}

TEST(BlockwiseMlp, BlocksWithoutAGeluMlpOrWithDropoutRefuseIt) {
  Generator gen(27);
  TransformerBlock swiglu(8, 2, 0.0f, true, &gen, "swiglu");
  EXPECT_ERROR_MENTIONS(swiglu.set_mlp_chunk_rows(4), "blockwise MLP runs GPT-2's gelu MLP only");
  swiglu.set_mlp_chunk_rows(0);  // unfused stays possible
  TransformerBlock dropout(8, 2, 0.1f, true, &gen);
  EXPECT_ERROR_MENTIONS(dropout.set_mlp_chunk_rows(4), "no dropout", "p = 0.1");
  TransformerBlock plain(8, 2, 0.0f, true, &gen);
  EXPECT_ERROR_MENTIONS(plain.set_mlp_chunk_rows(-1), "must be 0 (unfused) or positive, found -1");
}

// ---- ./train --blockwise ----------------------------------------------------------------------

namespace {

// The (train loss) column of metrics.csv, one value per logged step.
std::vector<double> train_losses(const std::string& csv) {
  std::vector<double> losses;
  for (const std::string& row : test::loss_columns(csv)) {
    const std::string cell = row.substr(row.find(',') + 1, row.find(',', row.find(',') + 1) - row.find(',') - 1);
    if (!cell.empty() && cell != "train_loss") losses.push_back(std::stod(cell));
  }
  return losses;
}

std::string fox_text() {
  std::string text;
  for (int i = 0; i < 60; i++) text += "the quick brown fox jumps over the lazy dog. ";
  return text;
}

// One block, 16 wide, 4 x 8 = 32 tokens a micro-batch; two threads, so the chunks are shared.
const std::string kRun = " --layers 1 --heads 2 --embd 16 --block 8 --batch 4 --eval-batches 2 --sample-tokens 8"
                         " --threads 2 --device cpu --steps 12 --log-every 1 --eval-every 100 --lr 1e-2";

}  // namespace

// Chunks of 6 tokens (5 of them and one of 2) against the unfused run, step by step. Step 1's loss
// is the same bits (the forward is); afterwards the weights differ by the reordered gradient sums
// (relative 2 gamma_32 ~ 4e-6 of the terms' magnitudes) carried through AdamW's normalised steps,
// so later losses may part at that order: 1e-4 leaves room for 12 steps of it and is still far below
// the ~0.5 nats the loss falls over them, which a wrong gradient would change.
TEST(BlockwiseMlpProgram, TrainLossesFollowTheUnfusedRun) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", fox_text());
  test::Result off = test::run("train", corpus + kRun + " --blockwise off --out " + dir.file("off"));
  ASSERT_EQ(off.status, 0) << off.out << off.err;
  EXPECT_NE(off.out.find("blockwise MLP (--blockwise off): off, unfused (as asked)"), std::string::npos) << off.out;
  test::Result on = test::run("train", corpus + kRun + " --blockwise 6 --out " + dir.file("on"));
  ASSERT_EQ(on.status, 0) << on.out << on.err;
  EXPECT_NE(on.out.find("blockwise MLP (--blockwise 6): on, chunks of m = 6 tokens (as asked)"), std::string::npos)
      << on.out;
  std::vector<double> want = train_losses(test::read_file(dir.file("off/metrics.csv")));
  std::vector<double> got = train_losses(test::read_file(dir.file("on/metrics.csv")));
  ASSERT_EQ(want.size(), 12u);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(got[0], want[0]);
  for (size_t i = 1; i < want.size(); i++) EXPECT_NEAR(got[i], want[i], 1e-4) << "step " << i + 1;
  EXPECT_LT(want.back(), want.front() - 0.3);  // it learned, so the comparison is of a moving loss

  // The choice is the run's: config.json keeps it, and a configuration from before the flag reads as auto.
  nlohmann::json config = nlohmann::json::parse(test::read_file(dir.file("on/config.json")));
  EXPECT_EQ(config.at("blockwise"), "6");
  config.erase("blockwise");
  EXPECT_EQ(text_options_from_json(config).blockwise, "auto");
  // Resuming may change it (an execution choice, not the model).
  test::Result resumed = test::run("train", corpus + " --out " + dir.file("on") +
                                                " --resume --steps 14 --threads 2 --device cpu --blockwise on");
  ASSERT_EQ(resumed.status, 0) << resumed.out << resumed.err;
  EXPECT_NE(resumed.out.find("blockwise MLP (--blockwise on): on, chunks of m = 32 tokens"), std::string::npos)
      << resumed.out;
}

// choose_blockwise on a machine of fixed figures (the programs measure theirs): auto follows the
// planner, on takes its chunk whatever the verdict, a number is the chunk, off and the cases the
// blockwise MLP does not serve are unfused; each line says which and why.
TEST(BlockwiseMlpPlan, ChoosesWhatThePlannerSays) {
  RunConfig c;
  c.task = "text", c.dtype = "fp32", c.batch = 12;
  c.text.layers = 1, c.text.heads = 2, c.text.embd = 128, c.text.block = 64;
  PlannerMachine machine;
  machine.peak_flops = 100e9, machine.bandwidth = 10e9, machine.fast_memory_bytes = 1 << 20, machine.tile_rows = 14;
  // c 64 > 12/(7 * 12) * 128 = 18: chunk. fit 2^20 / (4 * 128 * 4 bytes) = 512 -> 504 (the tile);
  // stream 4 * 100e9 / (2 * 10e9) = 20 -> 28; 768 tokens > 504.
  BlockwiseChoice choice = choose_blockwise(c, machine);
  EXPECT_EQ(choice.chunk_tokens, 504);
  EXPECT_EQ(choice.line, "blockwise MLP (--blockwise auto): on, chunks of m = 504 tokens (the planner's chunk)");
  c.text.blockwise = "24";
  EXPECT_EQ(choose_blockwise(c, machine).chunk_tokens, 24);
  c.text.blockwise = "off";
  EXPECT_EQ(choose_blockwise(c, machine).chunk_tokens, 0);
  EXPECT_EQ(choose_blockwise(c, machine).line, "blockwise MLP (--blockwise off): off, unfused (as asked)");

  c.batch = 4;  // 256 tokens: one chunk of 504 would hold them all, so the planner does not chunk
  c.text.blockwise = "auto";
  choice = choose_blockwise(c, machine);
  EXPECT_EQ(choice.chunk_tokens, 0);
  EXPECT_NE(choice.line.find("off, unfused (the planner does not chunk: "), std::string::npos) << choice.line;
  c.text.blockwise = "on";  // the planner's chunk, at most the micro-batch
  EXPECT_EQ(choose_blockwise(c, machine).chunk_tokens, 256);
  machine.fast_memory_bytes = 0;  // a GPU that does not say its L2: on is one chunk, auto unfused
  EXPECT_EQ(choose_blockwise(c, machine).chunk_tokens, 256);
  c.text.blockwise = "auto";
  EXPECT_EQ(choose_blockwise(c, machine).chunk_tokens, 0);

  machine.fast_memory_bytes = 1 << 20;
  c.batch = 12;
  c.text.mlp = "swiglu";
  EXPECT_EQ(choose_blockwise(c, machine).line,
            "blockwise MLP (--blockwise auto): off, unfused (--mlp swiglu has no blockwise path)");
  c.text.mlp = "gelu";
  c.text.dropout = 0.1;
  EXPECT_EQ(choose_blockwise(c, machine).chunk_tokens, 0);
}

TEST(BlockwiseMlpProgram, BadValuesGetOneLineNamingTheFlag) {
  TempDir dir;
  std::string corpus = dir.write("fox.txt", fox_text());
  const std::string base = corpus + " --layers 1 --heads 2 --embd 16 --block 8 --device cpu --steps 1 --out " +
                           dir.file("run");
  EXPECT_ONE_LINE_ERROR(test::run("train", base + " --blockwise sometimes"),
                        "--blockwise 'sometimes' is not one of auto|on|off or a chunk of 1 to 999999999 tokens");
  EXPECT_ONE_LINE_ERROR(test::run("train", base + " --blockwise 0"), "--blockwise '0' is not one of");
  EXPECT_ONE_LINE_ERROR(test::run("train", base + " --blockwise -5"), "--blockwise '-5' is not one of");
  EXPECT_ONE_LINE_ERROR(test::run("train", base + " --blockwise on --mlp swiglu"),
                        "--blockwise on runs GPT-2's gelu MLP, and --mlp is swiglu");
  EXPECT_ONE_LINE_ERROR(test::run("train", base + " --blockwise 4 --dropout 0.1"),
                        "--blockwise 4 has no dropout, and --dropout is 0.1");
  EXPECT_ONE_LINE_ERROR(test::run("train", corpus + " --arch lstm --device cpu --blockwise on"),
                        "--blockwise applies to --arch gpt only");
  EXPECT_FALSE(test::exists(dir.file("run")));
}
