// The pluggable feed-forward part of the transformer block: SwiGLU against a double reference and
// finite differences, the make_mlp registry, and a GPT built with --mlp swiglu (gradients of every
// parameter, a checkpoint round trip).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "nn/gradcheck.h"
#include "nn/gpt.h"
#include "nn/init.h"
#include "nn/mlp.h"
#include "nn/swiglu.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

GPTConfig swiglu_config() {
  GPTConfig c;
  c.vocab_size = 11;
  c.block_size = 7;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 6;
  c.bias = false;  // fewer parameters to difference; the biases' gradients are the GEMMs' column sums
  c.mlp = "swiglu";
  return c;
}

}  // namespace

TEST(SwiGLU, HiddenWidthIsLLaMAs) {
  // int(2/3 * 4C) rounded up to a multiple of 64.
  EXPECT_EQ(SwiGLU::hidden_size(6), 64);      // 16 -> 64
  EXPECT_EQ(SwiGLU::hidden_size(128), 384);   // 341 -> 384
  EXPECT_EQ(SwiGLU::hidden_size(384), 1024);  // 1024 exactly
  EXPECT_EQ(SwiGLU::hidden_size(768), 2048);  // 2048 exactly
  Generator gen(1);
  SwiGLU layer(10, 0.0f, true, &gen);
  std::vector<std::string> names;
  for (const auto& entry : layer.named_parameters()) names.push_back(entry.first);
  EXPECT_EQ(names, (std::vector<std::string>{"c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias"}));
  EXPECT_EQ(layer.c_fc->weight.shape(), (Shape{128, 10}));
  EXPECT_EQ(layer.c_proj->weight.shape(), (Shape{10, 64}));
}

TEST(SwiGLU, MatchesADoubleReference) {
  const int64_t R = 3, C = 5;
  Generator gen(2);
  SwiGLU layer(C, 0.0f, true, &gen);
  const int64_t H = layer.hidden_features;
  Tensor x = Tensor::randn({R, C}, &gen);
  Tensor residual = Tensor::randn({R, C}, &gen);
  std::vector<float> w1 = layer.c_fc->weight.to_vector(), b1 = layer.c_fc->bias.to_vector();
  std::vector<float> w2 = layer.c_proj->weight.to_vector(), b2 = layer.c_proj->bias.to_vector();
  std::vector<float> xv = x.to_vector(), rv = residual.to_vector();
  std::vector<double> want(R * C), want_residual(R * C), bound(R * C);
  for (int64_t r = 0; r < R; r++) {
    std::vector<double> hidden(H), hidden_abs(H);
    for (int64_t h = 0; h < H; h++) {
      double gate = b1[h], up = b1[H + h], gate_abs = std::fabs(b1[h]), up_abs = std::fabs(b1[H + h]);
      for (int64_t i = 0; i < C; i++) {
        gate += w1[h * C + i] * xv[r * C + i], up += w1[(H + h) * C + i] * xv[r * C + i];
        gate_abs += std::fabs(w1[h * C + i] * xv[r * C + i]), up_abs += std::fabs(w1[(H + h) * C + i] * xv[r * C + i]);
      }
      const double sigmoid = 1.0 / (1.0 + std::exp(-gate));
      hidden[h] = gate * sigmoid * up;
      hidden_abs[h] = gate_abs * up_abs;  // bounds |silu(gate) up| and the error it carries forward
    }
    for (int64_t o = 0; o < C; o++) {
      double acc = b2[o], acc_abs = std::fabs(b2[o]);
      for (int64_t h = 0; h < H; h++) acc += w2[o * H + h] * hidden[h], acc_abs += std::fabs(w2[o * H + h]) * hidden_abs[h];
      want[r * C + o] = acc;
      want_residual[r * C + o] = acc + rv[r * C + o];
      // The dot-product bound: (length + a few roundings) u times the sum of |terms|. C for c_fc's
      // dot products, H for c_proj's, 8 for the biases, silu's tanh, scale and products and the
      // residual add; doubled for tanh's own few-ulp error.
      bound[r * C + o] = 2.0 * (C + H + 8) * std::ldexp(1.0, -24) * (acc_abs + std::fabs(rv[r * C + o]));
    }
  }
  std::vector<float> got = layer.forward(x).to_vector(), got_residual = layer.forward_residual(x, residual).to_vector();
  for (int64_t i = 0; i < R * C; i++) {
    EXPECT_NEAR(got[i], want[i], bound[i]) << i;
    EXPECT_NEAR(got_residual[i], want_residual[i], bound[i]) << i;
  }
}

// The inputs and every parameter, through finite differences.
TEST(SwiGLU, Gradchecks) {
  Generator gen(3);
  SwiGLU layer(5, 0.0f, true, &gen);
  Tensor x = Tensor::randn({2, 3, 5}, &gen).requires_grad_(), residual = Tensor::randn({2, 3, 5}, &gen).requires_grad_();
  EXPECT_EQ(gradcheck_module(layer, [&](const std::vector<Tensor>& in) { return layer.forward(in[0]); }, {x}), "");
  EXPECT_EQ(gradcheck_module(
                layer, [&](const std::vector<Tensor>& in) { return layer.forward_residual(in[0], in[1]); }, {x, residual}),
            "");
}

TEST(FeedForward, MakeMlpBuildsEachNameAndRefusesOthers) {
  EXPECT_EQ(mlp_names(), (std::vector<std::string>{"gelu", "swiglu"}));
  Generator gen(4);
  EXPECT_NE(std::dynamic_pointer_cast<MLP>(make_mlp("gelu", 8, 0.0f, true, &gen)), nullptr);
  EXPECT_NE(std::dynamic_pointer_cast<SwiGLU>(make_mlp("swiglu", 8, 0.0f, true, &gen)), nullptr);
  EXPECT_ERROR_MENTIONS(make_mlp("relu", 8), "mlp 'relu'", "gelu|swiglu");
  GPTConfig c = swiglu_config();
  c.mlp = "geglu";
  EXPECT_ERROR_MENTIONS(c.validate(), "GPTConfig: mlp", "gelu|swiglu", "'geglu'");
}

TEST(GPTSwiGLU, EveryParameterGradchecks) {
  GPT model(swiglu_config(), 5);
  EXPECT_NE(model.named_parameters()[2].first.find("h.0.ln_1"), std::string::npos);
  // Weights of order 1 instead of GPT-2's 0.02, so that every path (the gate, the up half, the
  // projection) moves the loss by far more than the tolerance and a wrong gradient shows.
  Generator gen(6);
  for (Tensor& p : model.parameters()) init::normal_(p, 0.0f, 0.5f, gen);
  Tensor idx = Tensor::from_ints({1, 4, 7, 2, 9, 3, 0, 10, 5, 6}, {2, 5});
  Tensor targets = Tensor::from_ints({4, 7, 2, 9, 3, 0, 10, 5, 6, 1}, {2, 5});
  EXPECT_EQ(gradcheck_module(model, [&](const std::vector<Tensor>&) { return model.loss(model.forward(idx), targets); }, {}),
            "");
}

TEST(GPTSwiGLU, CheckpointRoundTripsAndNamesTheLayers) {
  GPT saved(swiglu_config(), 1), loaded(swiglu_config(), 2);
  const int64_t H = SwiGLU::hidden_size(6);
  Shape c_fc_shape;
  for (const auto& [name, p] : saved.named_parameters())
    if (name == "h.0.mlp.c_fc.weight") c_fc_shape = p.shape();
  EXPECT_EQ(c_fc_shape, (Shape{2 * H, 6}));
  std::string path = "/tmp/tg_swiglu_" + std::to_string(getpid()) + ".safetensors";
  saved.save(path);
  loaded.load(path);
  Tensor idx = Tensor::from_ints({1, 4, 7, 2, 9}, {1, 5});
  EXPECT_EQ(saved.forward(idx).to_vector(), loaded.forward(idx).to_vector());
  // A GELU model cannot take a SwiGLU model's weights: the load names the mismatched tensors.
  GPTConfig gelu = swiglu_config();
  gelu.mlp = "gelu";
  GPT other(gelu, 3);
  EXPECT_ERROR_MENTIONS(other.load(path), "h.0.mlp.c_fc.weight");
  std::remove(path.c_str());
}
