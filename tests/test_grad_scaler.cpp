// The loss scaler (optim/grad_scaler.h): skipping on inf/NaN, backoff and growth, exact unscaling,
// idempotence, pass-through when disabled, checkpoints, and a short training run that the scaler
// must not change by a single bit (every factor is a power of two).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "autograd/engine.h"
#include "autograd/functions/activation.h"
#include "autograd/functions/crossentropy.h"
#include "nn/linear.h"
#include "ops/optim.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/grad_scaler.h"
#include "optim/sgd.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

using test::leaf;
using test::same_bits;

GradScalerOptions interval(int64_t growth_interval) {
  GradScalerOptions o;
  o.growth_interval = growth_interval;
  return o;
}

// Three parameters and an AdamW over them; set_scaled_grads gives each the gradient a backward of
// a loss scaled by `scale` would: seed-drawn values times scale (exact: a power of two).
struct Rig {
  std::vector<Tensor> params;
  AdamW opt;
  explicit Rig(uint64_t seed)
      : params(make(seed)), opt({{{params[0], params[2]}, 0.1f}, {{params[1]}, 0.0f}}, 1e-2f) {}
  static std::vector<Tensor> make(uint64_t seed) {
    Generator gen(seed);
    return {leaf(Tensor::randn({5, 3}, &gen)), leaf(Tensor::randn({7}, &gen)), leaf(Tensor::randn({9000}, &gen))};
  }
  void set_scaled_grads(int step, float scale) {
    Generator gen(100 + step);
    for (Tensor& p : params) {
      Tensor g = Tensor::randn(p.shape(), &gen);
      ops::scale_(g, scale);
      p.set_grad(g);
    }
  }
  std::vector<Tensor> snapshot() const {
    std::vector<Tensor> out;
    for (const Tensor& p : params) out.push_back(p.clone());
    for (const auto& [name, t] : opt.state_tensors()) out.push_back(t.clone());
    return out;
  }
};

void expect_same(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++) EXPECT_TRUE(same_bits(a[i], b[i])) << "tensor " << i;
}

}  // namespace

// An inf (and separately a NaN) in one element of one gradient: the step is skipped with the
// parameters, moments and counts untouched, the scale halves, the skip is counted, and the next
// clean step goes ahead at the new scale.
TEST(GradScaler, NonFiniteGradientSkipsTheStepAndHalvesTheScale) {
  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    SCOPED_TRACE(bad);
    Rig s(1);
    GradScaler scaler(interval(3));
    EXPECT_EQ(scaler.scale(), 65536.0f);
    s.set_scaled_grads(0, scaler.scale());
    EXPECT_TRUE(scaler.step(s.opt));
    scaler.update();
    EXPECT_EQ(s.opt.step_count(), 1);

    const std::vector<Tensor> before = s.snapshot();
    s.set_scaled_grads(1, scaler.scale());
    s.params[2].grad().data<float>()[8200] = bad;  // in the second 8192-element block of the largest tensor
    EXPECT_FALSE(scaler.unscale_(s.params));
    EXPECT_FALSE(scaler.step(s.opt));
    scaler.update();
    expect_same(s.snapshot(), before);
    EXPECT_EQ(s.opt.step_count(), 1) << "a skipped step is not an optimizer step";
    EXPECT_EQ(scaler.scale(), 32768.0f);
    EXPECT_EQ(scaler.skipped_steps(), 1);
    EXPECT_EQ(scaler.growth_tracker(), 0);

    s.set_scaled_grads(2, scaler.scale());
    EXPECT_TRUE(scaler.step(s.opt));
    scaler.update();
    EXPECT_EQ(s.opt.step_count(), 2);
    EXPECT_EQ(scaler.skipped_steps(), 1);
  }
}

// growth_interval 3: the scale doubles after the third clean step in a row, an overflow resets the
// count, and the count of clean steps restarts after each growth.
TEST(GradScaler, ScaleGrowsAfterGrowthIntervalCleanSteps) {
  Rig s(2);
  GradScaler scaler(interval(3));
  auto clean_step = [&](int step) {
    s.set_scaled_grads(step, scaler.scale());
    EXPECT_TRUE(scaler.step(s.opt));
    scaler.update();
  };
  clean_step(0);
  clean_step(1);
  EXPECT_EQ(scaler.growth_tracker(), 2);
  EXPECT_EQ(scaler.scale(), 65536.0f);
  clean_step(2);
  EXPECT_EQ(scaler.scale(), 131072.0f);
  EXPECT_EQ(scaler.growth_tracker(), 0);
  clean_step(3);
  clean_step(4);
  s.set_scaled_grads(5, scaler.scale());
  s.params[0].grad().data<float>()[0] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(scaler.step(s.opt));
  scaler.update();
  EXPECT_EQ(scaler.scale(), 65536.0f);
  EXPECT_EQ(scaler.growth_tracker(), 0);
  clean_step(6);
  clean_step(7);
  EXPECT_EQ(scaler.scale(), 65536.0f) << "two clean steps after an overflow are not three";
  clean_step(8);
  EXPECT_EQ(scaler.scale(), 131072.0f);
  EXPECT_EQ(scaler.skipped_steps(), 1);
}

// unscale_ leaves grad * (1/scale) in every gradient, f32 and half alike (the half ones rounded
// once), and is idempotent within a step: step() after unscale_ does not divide again.
TEST(GradScaler, UnscaledGradientsAreGradOverScale) {
  Generator gen(5);
  std::vector<Tensor> params = {leaf(Tensor::zeros({8193})), leaf(Tensor::zeros({3, 5}, DType::BF16)),
                                leaf(Tensor::zeros({11}, DType::F16)), leaf(Tensor::zeros({2}))};
  std::vector<Tensor> grads;
  for (size_t i = 0; i < 3; i++) {
    Tensor g = Tensor::randn(params[i].shape(), &gen);
    ops::scale_(g, 1000.0f);
    grads.push_back(g.to(params[i].dtype()));
    params[i].set_grad(grads[i].clone());
  }
  GradScaler scaler;
  ASSERT_TRUE(scaler.unscale_(params));
  const float inv = 1.0f / 65536.0f;
  for (size_t i = 0; i < 3; i++) {
    std::vector<float> g = grads[i].to_vector();
    for (float& x : g) x *= inv;
    Tensor expected = Tensor::from_vector(g, grads[i].shape()).to(grads[i].dtype());
    EXPECT_TRUE(same_bits(params[i].grad(), expected)) << i;
  }
  EXPECT_FALSE(params[3].grad().defined()) << "a parameter without a gradient gets none";

  // A second unscale_ and the step change nothing more.
  std::vector<Tensor> after;
  for (size_t i = 0; i < 3; i++) after.push_back(params[i].grad().clone());
  EXPECT_TRUE(scaler.unscale_(params));
  SGD sgd({{{params[0], params[3]}, 0.0f}}, 0.0f);  // lr 0: the step reads the gradients, changes no weight
  EXPECT_TRUE(scaler.step(sgd));
  for (size_t i = 0; i < 3; i++) EXPECT_TRUE(same_bits(params[i].grad(), after[i])) << i;
  expect_error([&] { scaler.unscale_({params[0]}); }, "GradScaler::unscale_: this step already unscaled a different list");
  scaler.update();
  EXPECT_TRUE(scaler.unscale_({params[0]})) << "after update() a new step may unscale any list";
}

// Disabled (f32 and bf16 runs): scale 1, the seed gradient untouched, unscale_ a no-op, and step()
// always steps, even on an inf.
TEST(GradScaler, DisabledPassesThrough) {
  GradScalerOptions off;
  off.enabled = false;
  GradScaler scaler(off);
  EXPECT_EQ(scaler.scale(), 1.0f);
  EXPECT_EQ(scaler.loss_grad(Tensor::scalar(2.0f), 0.25f).item(), 0.25f);
  Rig s(3);
  s.set_scaled_grads(0, 1.0f);
  s.params[1].grad().data<float>()[0] = std::numeric_limits<float>::infinity();
  Tensor g = s.params[0].grad().clone();
  EXPECT_TRUE(scaler.unscale_(s.params));
  EXPECT_TRUE(same_bits(s.params[0].grad(), g));
  EXPECT_TRUE(scaler.step(s.opt));
  scaler.update();
  EXPECT_EQ(s.opt.step_count(), 1);
  EXPECT_EQ(scaler.skipped_steps(), 0);
}

// A small MLP trained for a few steps with gradient accumulation and clipping: with the scaler the
// gradients are the unscaled run's times 2^16, exactly (every backward operation is linear in the
// seed gradient, and scaling by a power of two commutes with rounding), so unscaling restores them
// bit for bit and the whole run is identical. The disabled scaler is identical too.
TEST(GradScaler, F32TrainingWithTheScalerIsBitwiseTheSame) {
  enum Mode { kPlain, kScaled, kDisabled };
  auto train = [](Mode mode) {
    Generator gen(9);
    Linear l1(8, 16, true, &gen), l2(16, 5, true, &gen);
    std::vector<Tensor> params = l1.parameters();
    for (const Tensor& p : l2.parameters()) params.push_back(p);
    AdamW opt(weight_decay_groups(params, 0.1f), 3e-2f);
    GradScalerOptions options;
    options.enabled = mode == kScaled;
    options.growth_interval = 2;  // the scale also grows during the run: still exact
    GradScaler scaler(options);
    std::vector<float> losses;
    for (int step = 0; step < 6; step++) {
      opt.zero_grad();
      for (int micro = 0; micro < 2; micro++) {
        Generator data(1000 + 2 * step + micro);
        Tensor x = Tensor::randn({6, 8}, &data);
        Tensor targets = Tensor::from_ints({0, 1, 2, 3, 4, 2}, {6});
        Tensor loss = cross_entropy(l2.forward(gelu(l1.forward(x))), targets);
        losses.push_back(loss.item());
        if (mode == kPlain) backward(loss, Tensor::full({}, 0.5f));
        else scaler.backward(loss, 0.5f);
      }
      if (mode != kPlain) {
        EXPECT_TRUE(scaler.unscale_(params));
      }
      clip_grad_norm(params, 0.5f);
      if (mode == kPlain) opt.step();
      else {
        EXPECT_TRUE(scaler.step(opt));
        scaler.update();
      }
    }
    if (mode == kScaled) {
      EXPECT_EQ(scaler.scale(), 65536.0f * 8) << "grew three times";
    }
    return std::make_pair(losses, params);
  };
  auto plain = train(kPlain), scaled = train(kScaled), disabled = train(kDisabled);
  EXPECT_EQ(plain.first, scaled.first);
  EXPECT_EQ(plain.first, disabled.first);
  expect_same(plain.second, scaled.second);
  expect_same(plain.second, disabled.second);
}

TEST(GradScaler, StateRoundTripAndBadState) {
  Rig s(4);
  GradScaler scaler(interval(3));
  s.set_scaled_grads(0, scaler.scale());
  s.params[0].grad().data<float>()[0] = NAN;
  scaler.step(s.opt);
  scaler.update();
  s.set_scaled_grads(1, scaler.scale());
  scaler.step(s.opt);
  scaler.update();
  SafetensorsData data;
  data.path = "ckpt.safetensors";
  data.tensors = scaler.state_tensors();
  GradScaler restored(interval(3));
  restored.load_state_tensors(data);
  EXPECT_EQ(restored.scale(), 32768.0f);
  EXPECT_EQ(restored.growth_tracker(), 1);
  EXPECT_EQ(restored.skipped_steps(), 1);

  // A checkpoint of a run without a scaler leaves it as it is.
  SafetensorsData none;
  none.path = "f32.safetensors";
  none.tensors = {{"adamw.step", Tensor::from_ints({3}, {})}};
  GradScaler fresh;
  fresh.load_state_tensors(none);
  EXPECT_EQ(fresh.scale(), 65536.0f);

  SafetensorsData partial = data;
  partial.tensors.erase(partial.tensors.begin() + 1);
  expect_error([&] { fresh.load_state_tensors(partial); },
               "GradScaler::load_state_tensors: ckpt.safetensors: missing \"grad_scaler.growth_tracker\"");
  SafetensorsData wrong = data;
  wrong.tensors[0].second = Tensor::scalar(-1.0f);
  expect_error([&] { fresh.load_state_tensors(wrong); }, "\"grad_scaler.scale\" is -1.000000, expected finite and > 0");
  wrong = data;
  wrong.tensors[2].second = Tensor::scalar(1.0f);
  expect_error([&] { fresh.load_state_tensors(wrong); }, "\"grad_scaler.skipped_steps\" is f32 (), expected i32 ()");
  EXPECT_EQ(fresh.scale(), 65536.0f) << "a failed load changes nothing";
  EXPECT_EQ(fresh.skipped_steps(), 0);
}

TEST(GradScaler, RejectsBadOptionsAndMisuse) {
  auto with = [](auto edit) {
    GradScalerOptions o;
    edit(o);
    return o;
  };
  expect_error([&] { GradScaler(with([](GradScalerOptions& o) { o.init_scale = 0.0f; })); },
               "GradScaler: init_scale must be finite and > 0");
  expect_error([&] { GradScaler(with([](GradScalerOptions& o) { o.growth_factor = 1.0f; })); },
               "GradScaler: growth_factor must be finite and > 1");
  expect_error([&] { GradScaler(with([](GradScalerOptions& o) { o.backoff_factor = 1.0f; })); },
               "GradScaler: backoff_factor must be in (0, 1)");
  expect_error([&] { GradScaler(with([](GradScalerOptions& o) { o.growth_interval = 0; })); },
               "GradScaler: growth_interval must be >= 1");
  GradScaler scaler;
  expect_error([&] { scaler.update(); }, "GradScaler::update: no unscale_() or step() since the last update()");
  expect_error([&] { scaler.loss_grad(Tensor()); }, "GradScaler::loss_grad: loss is an undefined tensor");
}
