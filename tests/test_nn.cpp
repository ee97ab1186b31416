// nn/: the Module registry (names, order, train/eval, state dicts, checkpoints, load errors), the
// layers' shapes and values, and the GPT's config checks, init, parameter count and causality.
// Whole-model numerics against PyTorch are in test_gpt_parity.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>
#include <omp.h>
#include <unistd.h>

#include "nn/batchnorm.h"
#include "nn/flatten.h"
#include "nn/pool.h"
#include "nn/relu.h"
#include "ops/flops.h"
#include "tilegrad.h"  // the umbrella header, so that the test build compiles it
#include "tests/test_util.h"

using namespace tg;

namespace {


GPTConfig tiny_config() {
  GPTConfig c;
  c.vocab_size = 11;
  c.block_size = 7;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 6;
  return c;
}

// A module with its own parameter and buffer, and two children, one of them nested.
struct Leaf : Module {
  Tensor w;
  explicit Leaf(int64_t n) { w = register_parameter("w", Tensor::ones({n})); }
};
struct Tree : Module {
  Tensor scale, count;
  std::shared_ptr<Leaf> left;
  std::shared_ptr<ModuleList<Leaf>> list;
  Tree() {
    scale = register_parameter("scale", Tensor::ones({2, 3}));
    left = register_module("left", std::make_shared<Leaf>(4));
    count = register_buffer("count", Tensor::zeros({1}));
    list = register_module("list", std::make_shared<ModuleList<Leaf>>());
    list->push_back(std::make_shared<Leaf>(5));
    list->push_back(std::make_shared<Leaf>(6));
  }
  // Exposed so the tests can try bad registrations.
  void add_parameter(const std::string& name, Tensor t) { register_parameter(name, t); }
};

std::vector<std::string> names_of(const NamedTensors& named) {
  std::vector<std::string> names;
  for (const auto& entry : named) names.push_back(entry.first);
  return names;
}

std::string temp_path(const std::string& stem) {
  return "/tmp/tilegrad_test_nn_" + std::to_string(getpid()) + "_" + stem + ".safetensors";
}

}  // namespace

TEST(Module, NamesAreDottedInRegistrationOrder) {
  Tree tree;
  EXPECT_EQ(names_of(tree.named_parameters()),
            (std::vector<std::string>{"scale", "left.w", "list.0.w", "list.1.w"}));
  EXPECT_EQ(names_of(tree.named_buffers()), (std::vector<std::string>{"count"}));
  EXPECT_EQ(names_of(tree.state_dict()), (std::vector<std::string>{"scale", "left.w", "list.0.w", "list.1.w", "count"}));
  EXPECT_EQ(tree.num_parameters(), 6 + 4 + 5 + 6);
  for (const Tensor& p : tree.parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_FALSE(tree.count.requires_grad());
  // The registry hands out the layer's own handles: a write through one is seen by the other.
  tree.parameters()[1].fill_(3.0f);
  EXPECT_EQ(tree.left->w.to_vector()[0], 3.0f);
  EXPECT_EQ(tree.list->size(), 2u);
  EXPECT_EQ((*tree.list)[1].w.numel(), 6);
}

TEST(Module, RejectsBadRegistrations) {
  Tree tree;
  EXPECT_ERROR_MENTIONS(tree.add_parameter("scale", Tensor::ones({1})), "'scale'", "already registered");
  EXPECT_ERROR_MENTIONS(tree.add_parameter("left", Tensor::ones({1})), "'left'", "already registered");
  EXPECT_ERROR_MENTIONS(tree.add_parameter("a.b", Tensor::ones({1})), "'a.b'", "'.'");
  EXPECT_ERROR_MENTIONS(tree.add_parameter("", Tensor::ones({1})), "non-empty");
  EXPECT_ERROR_MENTIONS(tree.add_parameter("ids", Tensor::from_ints({1}, {1})), "'ids'", "i32", "floating");
}

TEST(Module, TrainAndEvalReachEveryDescendant) {
  GPT model(tiny_config(), 1);
  EXPECT_TRUE(model.is_training());
  model.eval();
  EXPECT_FALSE(model.is_training());
  EXPECT_FALSE(model.drop->is_training());
  EXPECT_FALSE(std::dynamic_pointer_cast<MLP>((*model.h)[1].mlp)->dropout->is_training());
  EXPECT_FALSE((*model.h)[0].attn->resid_dropout->is_training());
  model.train();
  EXPECT_TRUE(std::dynamic_pointer_cast<MLP>((*model.h)[1].mlp)->dropout->is_training());
  EXPECT_TRUE(model.ln_f->is_training());
}

TEST(Module, StateDictRoundTripsThroughAFile) {
  GPT saved(tiny_config(), 1), loaded(tiny_config(), 2);
  std::string path = temp_path("roundtrip");
  saved.save(path, {{"note", "test"}});
  NamedTensors before = loaded.state_dict();
  std::vector<float> wte_before = loaded.wte->weight.to_vector();
  Tensor handle = loaded.wte->weight;  // held elsewhere, like an optimizer would
  loaded.load(path);
  std::remove(path.c_str());
  EXPECT_NE(wte_before, saved.wte->weight.to_vector());  // seeds 1 and 2 differ, so the load did something
  NamedTensors a = saved.state_dict(), b = loaded.state_dict();
  ASSERT_EQ(names_of(a), names_of(b));
  for (size_t i = 0; i < a.size(); i++) EXPECT_EQ(a[i].second.to_vector(), b[i].second.to_vector()) << a[i].first;
  // Loaded in place: the handle taken before the load sees the new values.
  EXPECT_EQ(handle.to_vector(), saved.wte->weight.to_vector());
}

TEST(Module, LoadStateDictNamesEveryProblemAndWritesNothing) {
  GPT model(tiny_config(), 1);
  NamedTensors state = GPT(tiny_config(), 2).state_dict();
  for (auto it = state.begin(); it != state.end(); ++it)
    if (it->first == "h.1.ln_2.bias") { state.erase(it); break; }
  for (auto& [name, tensor] : state)
    if (name == "wpe.weight") tensor = Tensor::zeros({8, 6});
  state.emplace_back("lm_head.weight", Tensor::zeros({11, 6}));
  std::vector<float> wte_before = model.wte->weight.to_vector();
  EXPECT_ERROR_MENTIONS(model.load_state_dict(state), "3 problems", "missing h.1.ln_2.bias (6)",
                        "unexpected lm_head.weight (11, 6)", "shape mismatch wpe.weight: module (7, 6), state dict (8, 6)");
  EXPECT_EQ(model.wte->weight.to_vector(), wte_before);  // wte was fine, but nothing is written on error

  // Non-strict: missing and unexpected names come back instead, a shape mismatch still throws.
  EXPECT_ERROR_MENTIONS(model.load_state_dict(state, false), "1 problem", "shape mismatch wpe.weight");
  for (auto& [name, tensor] : state)
    if (name == "wpe.weight") tensor = Tensor::zeros({7, 6});
  LoadStateDictResult result = model.load_state_dict(state, false);
  EXPECT_EQ(result.missing, std::vector<std::string>{"h.1.ln_2.bias"});
  EXPECT_EQ(result.unexpected, std::vector<std::string>{"lm_head.weight"});
  EXPECT_NE(model.wte->weight.to_vector(), wte_before);
  EXPECT_EQ(model.wpe->weight.to_vector(), std::vector<float>(42, 0.0f));

  NamedTensors duplicated = model.state_dict();
  duplicated.push_back(duplicated.front());
  EXPECT_ERROR_MENTIONS(model.load_state_dict(duplicated), "duplicate wte.weight");
}

TEST(Module, LoadFromAFileNamesTheFile) {
  Tree tree;
  std::string path = temp_path("foreign");
  save_safetensors(path, {{"scale", Tensor::ones({2, 3})}});
  EXPECT_ERROR_MENTIONS(tree.load(path), path, "missing left.w (4)", "missing count (1)");
  std::remove(path.c_str());
}

TEST(Module, ToTheSameDeviceKeepsHandles) {
  Tree tree;
  Tensor handle = tree.left->w;
  void* data = handle.data_raw();
  tree.to(Device::cpu());
  EXPECT_EQ(tree.left->w.data_raw(), data);
  EXPECT_EQ(handle.impl_ptr(), tree.named_parameters()[1].second.impl_ptr());
}

TEST(Init, NormalHasTheRightLawAndIsReproducible) {
  const int64_t n = 3 * init::kInitBlock + 5;  // several blocks and an odd tail
  Tensor a = Tensor::empty({n}), b = Tensor::empty({n});
  Generator gen_a(11), gen_b(11);
  init::normal_(a, 0.0f, 1.0f, gen_a);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);  // the values may not depend on the thread count
  init::normal_(b, 0.0f, 1.0f, gen_b);
  omp_set_num_threads(threads);
  std::vector<float> va = a.to_vector();
  EXPECT_EQ(va, b.to_vector());
  EXPECT_EQ(gen_a.next_u64(), gen_b.next_u64());  // one draw per tensor, however large
  double sum = 0, squares = 0;
  int64_t within_one = 0;
  for (float v : va) sum += v, squares += double(v) * v, within_one += std::fabs(v) < 1.0f;
  double mean = sum / n, var = squares / n - mean * mean;
  // n = 196613: standard errors are 0.0023 (mean), 0.0032 (variance), 0.0011 (P(|z| < 1) = 0.6827);
  // the bounds are five of them, so a wrong law (uniform, a missing factor 2) fails and chance does not.
  EXPECT_NEAR(mean, 0.0, 0.012);
  EXPECT_NEAR(var, 1.0, 0.016);
  EXPECT_NEAR(double(within_one) / n, 0.6827, 0.0055);
  // Blocks are independent streams, not copies of one.
  EXPECT_NE(std::vector<float>(va.begin(), va.begin() + 8),
            std::vector<float>(va.begin() + init::kInitBlock, va.begin() + init::kInitBlock + 8));
  // A strided view gets the values a contiguous tensor of its shape would, in its own row-major order.
  Tensor base = Tensor::zeros({5, 3}), contiguous = Tensor::empty({3, 5});
  Tensor view = base.transpose(0, 1);
  Generator gen_c(12), gen_d(12);
  init::normal_(view, 1.0f, 0.5f, gen_c);
  init::normal_(contiguous, 1.0f, 0.5f, gen_d);
  EXPECT_EQ(view.to_vector(), contiguous.to_vector());
}

TEST(Layers, LinearMatchesANaiveProduct) {
  Generator gen(3);
  Linear layer(5, 3, true, &gen);
  // PyTorch's default init: uniform in +-1/sqrt(in_features).
  for (float w : layer.weight.to_vector()) EXPECT_LE(std::fabs(w), 1.0f / std::sqrt(5.0f));
  Tensor x = Tensor::randn({2, 4, 5}, &gen);
  Tensor y = layer.forward(x);
  ASSERT_EQ(y.shape(), (Shape{2, 4, 3}));
  std::vector<float> xs = x.to_vector(), ws = layer.weight.to_vector(), bs = layer.bias.to_vector(), ys = y.to_vector();
  for (int64_t row = 0; row < 8; row++)
    for (int64_t o = 0; o < 3; o++) {
      double expected = bs[o];
      for (int64_t i = 0; i < 5; i++) expected += double(xs[row * 5 + i]) * ws[o * 5 + i];
      // f32 sums of 6 terms of order 1: a few ulp.
      EXPECT_NEAR(ys[row * 3 + o], expected, 1e-5) << row << ", " << o;
    }
  Linear no_bias(5, 3, false, &gen);
  EXPECT_FALSE(no_bias.bias.defined());
  EXPECT_EQ(names_of(no_bias.named_parameters()), std::vector<std::string>{"weight"});
  EXPECT_ERROR_MENTIONS(Linear(0, 3), "Linear", "positive");
}

TEST(Layers, DropoutIsTheIdentityInEvalAndChecksP) {
  Generator gen(6);
  Dropout drop(0.5f, &gen);
  Tensor x = Tensor::ones({4, 9});
  drop.eval();
  EXPECT_EQ(drop.forward(x).to_vector(), x.to_vector());
  drop.train();
  std::vector<float> y = drop.forward(x).to_vector();
  int zeros = 0;
  for (float v : y) {
    EXPECT_TRUE(v == 0.0f || std::fabs(v - 2.0f) < 1e-6f) << v;  // kept values scaled by 1/(1-p)
    zeros += v == 0.0f;
  }
  EXPECT_GT(zeros, 0);   // 36 draws at p = 0.5: all kept has probability 2^-36
  EXPECT_LT(zeros, 36);
  EXPECT_ERROR_MENTIONS(Dropout(1.0f), "Dropout", "p must be in [0, 1)");
}

TEST(Layers, BlocksKeepTheShapeAndCheckTheHeads) {
  Generator gen(5);
  TransformerBlock block(8, 2, 0.0f, true, &gen);
  EXPECT_EQ(names_of(block.named_parameters()),
            (std::vector<std::string>{"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                      "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                      "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"}));
  EXPECT_EQ(block.attn->c_attn->weight.shape(), (Shape{24, 8}));
  EXPECT_EQ(std::dynamic_pointer_cast<MLP>(block.mlp)->c_fc->weight.shape(), (Shape{32, 8}));
  Tensor x = Tensor::randn({2, 5, 8}, &gen);
  EXPECT_EQ(block.forward(x).shape(), x.shape());
  EXPECT_ERROR_MENTIONS(CausalSelfAttention(6, 4), "n_embd (6)", "n_head (4)");
}

TEST(GPTConfig, ValidateNamesTheField) {
  const char* fields[] = {"vocab_size", "block_size", "n_layer", "n_head", "n_embd"};
  for (const char* field : fields) {
    GPTConfig c = tiny_config();
    std::string name = field;
    int64_t* slot = name == "vocab_size" ? &c.vocab_size : name == "block_size" ? &c.block_size
                    : name == "n_layer"  ? &c.n_layer    : name == "n_head"     ? &c.n_head : &c.n_embd;
    *slot = 0;
    EXPECT_ERROR_MENTIONS(c.validate(), field, "positive", "found 0");
    EXPECT_ERROR_MENTIONS(GPT(c, 0), field);
  }
  GPTConfig c = tiny_config();
  c.n_head = 4;  // 6 % 4 != 0
  EXPECT_ERROR_MENTIONS(c.validate(), "n_embd (6)", "n_head (4)", "divisible");
  c = tiny_config();
  c.dropout = 1.0f;
  EXPECT_ERROR_MENTIONS(c.validate(), "dropout", "[0, 1)");
  tiny_config().validate();
}

TEST(GPT, ForwardChecksItsInput) {
  GPT model(tiny_config(), 1);
  EXPECT_EQ(model.forward(Tensor::from_ints(std::vector<int32_t>(2 * 7, 3), {2, 7})).shape(), (Shape{2, 7, 11}));
  EXPECT_ERROR_MENTIONS(model.forward(Tensor::from_ints(std::vector<int32_t>(2 * 8, 3), {2, 8})), "T = 8",
                        "block_size = 7");
  EXPECT_ERROR_MENTIONS(model.forward(Tensor::from_ints(std::vector<int32_t>(5, 3), {5})), "(B, T)", "(5)");
  EXPECT_ERROR_MENTIONS(model.forward(Tensor::zeros({2, 3})), "i32", "f32");
  EXPECT_ERROR_MENTIONS(model.forward(Tensor::from_ints({1, 2, 11}, {1, 3})), "11");  // id out of [0, V)
}

TEST(GPT, ParameterCountMatchesAHandCount) {
  GPTConfig c = tiny_config();
  int64_t V = c.vocab_size, T = c.block_size, L = c.n_layer, C = c.n_embd;
  // Per block: ln_1 2C, c_attn 3C*C + 3C, attn.c_proj C*C + C, ln_2 2C, c_fc 4C*C + 4C, mlp.c_proj 4C*C + C.
  int64_t per_block = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C);
  EXPECT_EQ(GPT(c, 0).num_parameters(), V * C + T * C + L * per_block + 2 * C);
  c.bias = false;  // LayerNorms keep their weights only, Linears lose their biases
  GPT no_bias(c, 0);
  EXPECT_EQ(no_bias.num_parameters(), V * C + T * C + L * (12 * C * C + 2 * C) + C);
  for (const auto& entry : no_bias.named_parameters()) EXPECT_EQ(entry.first.find("bias"), std::string::npos);
  EXPECT_EQ(no_bias.forward(Tensor::from_ints({1, 2, 3}, {1, 3})).shape(), (Shape{1, 3, 11}));

}

// flops_per_token against a count by hand, the one FLOP model of the GPT (bench_gpu_train and its
// PyTorch peer print it too). Per token, forward: 2 FLOPs per multiply-add of the matmuls, through
// 12 C^2 weights per block (c_attn 3C^2, attn.c_proj C^2, c_fc 4C^2, mlp.c_proj 4C^2) and the tied
// lm_head's V C; attention's QK^T and AV each 2 T C per layer over the full T x T scores. Training
// is 3x the forward (the backward forms two products per forward one). The formula's 6N also
// counts 6 per bias and LayerNorm parameter (13 C per block with biases, 2 C without, plus ln_f):
// nanoGPT's approximation, stated here so the count is exact.
TEST(GPT, FlopsPerTokenIsTheHandCount) {
  for (bool bias : {true, false}) {
    GPTConfig c = tiny_config();
    c.bias = bias;
    const double V = c.vocab_size, T = c.block_size, L = c.n_layer, C = c.n_embd;
    const double matmul_forward = 2 * (12 * L * C * C + V * C);
    const double attention_forward = 2 * 2 * T * C * L;
    const double vectors = bias ? L * 13 * C + 2 * C : L * 2 * C + C;
    GPT model(c, 0);
    EXPECT_DOUBLE_EQ(model.flops_per_token(), 3 * (matmul_forward + attention_forward) + 6 * vectors)
        << "bias " << bias;
    // The matmul part is what the fronts count in one forward of T tokens (attention is fused and
    // counts nothing).
    ops::FlopCounter counter;
    std::vector<int32_t> ids(static_cast<size_t>(c.block_size));
    for (size_t i = 0; i < ids.size(); i++) ids[i] = static_cast<int32_t>(i % static_cast<size_t>(c.vocab_size));
    model.forward(Tensor::from_ints(ids, {1, c.block_size}));
    EXPECT_DOUBLE_EQ(counter.flops(), T * matmul_forward) << "bias " << bias;
  }
}

TEST(GPT, InitIsGPT2sAndFixedBySeed) {
  GPTConfig c = tiny_config();
  c.n_embd = 64;  // enough elements for the standard deviations below
  c.n_head = 4;
  GPT a(c, 7), b(c, 7), other(c, 8);
  NamedTensors sa = a.state_dict(), sb = b.state_dict(), so = other.state_dict();
  for (size_t i = 0; i < sa.size(); i++) {
    const std::string& name = sa[i].first;
    std::vector<float> va = sa[i].second.to_vector();
    EXPECT_EQ(va, sb[i].second.to_vector()) << name;  // same seed, same bits
    bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    if (sa[i].second.dim() == 1) {
      float expected = is_bias ? 0.0f : 1.0f;  // biases zero, LayerNorm weights one
      for (float v : va) ASSERT_EQ(v, expected) << name;
      continue;
    }
    EXPECT_NE(va, so[i].second.to_vector()) << name;
    double sum = 0, squares = 0;
    for (float v : va) sum += v, squares += double(v) * v;
    double mean = sum / va.size(), std = std::sqrt(squares / va.size() - mean * mean);
    bool residual = name.find("c_proj.weight") != std::string::npos;
    double expected_std = residual ? 0.02 / std::sqrt(2.0 * c.n_layer) : 0.02;
    // The smallest tensor here is wpe with 7 * 64 = 448 draws: the sample std's relative standard
    // error is 1/sqrt(2n) < 3.4%, so 15% is over four standard errors.
    EXPECT_NEAR(std, expected_std, 0.15 * expected_std) << name;
    EXPECT_NEAR(mean, 0.0, 4 * expected_std / std::sqrt(double(va.size()))) << name;
  }
}

TEST(GPT, LogitsAreCausal) {
  GPT model(tiny_config(), 3);
  model.eval();
  Tensor idx = Tensor::from_ints({1, 5, 2, 9, 4, 0}, {1, 6});
  Tensor changed = Tensor::from_ints({1, 5, 2, 7, 4, 0}, {1, 6});  // position 3 differs
  std::vector<float> a = model.forward(idx).to_vector(), b = model.forward(changed).to_vector();
  const size_t V = 11;
  // Positions 0..2 never see position 3: bit-identical. Positions 3..5 do: they must change.
  for (size_t i = 0; i < 3 * V; i++) ASSERT_EQ(a[i], b[i]) << "logit " << i;
  for (size_t t = 3; t < 6; t++) {
    bool differs = false;
    for (size_t v = 0; v < V; v++) differs |= a[t * V + v] != b[t * V + v];
    EXPECT_TRUE(differs) << "position " << t;
  }
}

TEST(GPT, DropoutOnlyActsInTraining) {
  GPTConfig c = tiny_config();
  c.dropout = 0.3f;
  GPT with_dropout(c, 4), without(tiny_config(), 4);  // same seed: same weights
  Tensor idx = Tensor::from_ints({1, 5, 2, 9, 4, 0, 3, 3}, {2, 4});
  with_dropout.eval();
  EXPECT_EQ(with_dropout.forward(idx).to_vector(), without.forward(idx).to_vector());
  with_dropout.train();
  EXPECT_NE(with_dropout.forward(idx).to_vector(), without.forward(idx).to_vector());
}

TEST(GPT, WeightDecayGroupsDecayMatricesAndEmbeddingsOnly) {
  GPT model(tiny_config(), 0);
  std::vector<ParamGroup> groups = weight_decay_groups(model.parameters(), 0.1f);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_FLOAT_EQ(groups[0].weight_decay, 0.1f);
  EXPECT_FLOAT_EQ(groups[1].weight_decay, 0.0f);
  // wte, wpe, and per block c_attn, attn.c_proj, c_fc, mlp.c_proj.
  EXPECT_EQ(groups[0].params.size(), 2u + 4u * 2u);
  for (const Tensor& p : groups[0].params) EXPECT_EQ(p.dim(), 2);
  for (const Tensor& p : groups[1].params) EXPECT_EQ(p.dim(), 1);
  EXPECT_EQ(groups[0].params.size() + groups[1].params.size(), model.parameters().size());
}

// ---- buffers kept f32, and the CNN layers' modules ------------------------------------------

namespace {

// A buffer that to(DType) converts and one it keeps f32, in a child, so that the flag is honoured
// through the tree.
struct Stats : Module {
  Tensor weight, scratch, running;
  Stats() {
    weight = register_parameter("weight", Tensor::ones({3}));
    scratch = register_buffer("scratch", Tensor::zeros({3}));
    running = register_buffer("running", Tensor::ones({3}), /*keep_f32=*/true);
  }
  void add_buffer(const std::string& name, Tensor t, bool keep_f32) { register_buffer(name, t, keep_f32); }
};
struct HoldsStats : Module {
  std::shared_ptr<Stats> stats;
  HoldsStats() { stats = register_module("stats", std::make_shared<Stats>()); }
};

}  // namespace

TEST(Module, ToDtypeKeepsBuffersRegisteredKeepF32) {
  HoldsStats model;
  Tensor running = model.stats->running;  // a handle held elsewhere, as an optimizer would
  model.to(DType::BF16);
  EXPECT_EQ(model.stats->weight.dtype(), DType::BF16);
  EXPECT_EQ(model.stats->scratch.dtype(), DType::BF16);
  EXPECT_EQ(model.stats->running.dtype(), DType::F32);
  EXPECT_EQ(running.dtype(), DType::F32);
  model.to(DType::F16);
  EXPECT_EQ(model.stats->weight.dtype(), DType::F16);
  EXPECT_EQ(model.stats->running.dtype(), DType::F32);
  // Names and the state dict are unchanged by the flag.
  EXPECT_EQ(names_of(model.named_buffers()), (std::vector<std::string>{"stats.scratch", "stats.running"}));
  Stats other;
  EXPECT_ERROR_MENTIONS(other.add_buffer("count", Tensor::zeros({1}, DType::I32), true), "register_buffer", "count",
                        "i32", "keep_f32");
}

TEST(Layers, CnnModulesKeepTheirShapes) {
  Generator gen(51);
  Tensor x = Tensor::randn({2, 8, 6, 16}, &gen);
  BatchNorm2d bn(16);
  Tensor y = ReLU().forward(bn.forward(x));
  EXPECT_EQ(y.shape(), x.shape());
  Pool2dParams p;
  p.kernel_h = p.kernel_w = 3, p.stride_h = p.stride_w = 2, p.pad_h = p.pad_w = 1;
  Tensor pooled = MaxPool2d(p).forward(y);
  EXPECT_EQ(pooled.shape(), (Shape{2, 4, 3, 16}));
  EXPECT_EQ(Flatten().forward(AdaptiveAvgPool2d(1, 1).forward(pooled)).shape(), (Shape{2, 16}));
  for (float v : y.to_vector()) ASSERT_GE(v, 0.0f);
}
