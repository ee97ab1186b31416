// CUDA optimizer kernels against the CPU ones: the multi-tensor fused AdamW (f32 params, and bf16 /
// f16 params with f32 masters rounded to nearest or stochastically, bf16 to nearest keeping its
// master as low bits beside the parameter), SGD, the global gradient norm
// and clipping, and the loss scaler's unscale + inf/NaN flag; determinism.
//
// Tolerances. The AdamW, SGD and scale kernels do the CPU kernels' f32 operations in the same
// order with explicit round-to-nearest intrinsics (ops/cuda/optim.cu), the stochastic rounding is
// the same code on both sides (ops/optim_math.h), and both round to half the IEEE way, so their
// results are compared BIT FOR BIT: any difference is a bug, not noise. Only the global norm
// differs by design (f32 partials on the GPU, double on the CPU); its bound is derived below.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "ops/optim.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/grad_scaler.h"
#include "optim/sgd.h"
#include "tensor/tensor.h"
#include "tests/cuda_test_util.h"
#include "tests/test_util.h"

using namespace tg;

namespace {

// Sizes that are not multiples of anything: one element, a ragged vector, less than a chunk, and
// twelve 8192-element chunks plus a tail of 2699.
const std::vector<int64_t> kSizes = {1, 7, 1000, 100003};

using test::same_bits;

Tensor leaf_on(const Tensor& t, Device device) {
  Tensor p = t.to(device);
  if (p.storage() == t.storage()) p = t.clone();
  p.requires_grad_();
  return p;
}

// Parameters of `dtype` with the same values on both devices.
struct Twin {
  std::vector<Tensor> cpu, gpu;
  Twin(DType dtype, uint64_t seed) {
    Generator gen(seed);
    for (int64_t n : kSizes) {
      Tensor init = test::rounded_randn({n}, gen, dtype).to(dtype);
      cpu.push_back(leaf_on(init, Device::cpu()));
      gpu.push_back(leaf_on(init, test::gpu()));
    }
  }
  static std::vector<ParamGroup> groups(const std::vector<Tensor>& p) {
    return {{{p[0], p[3]}, 0.1f}, {{p[1], p[2]}, 0.0f}};
  }
  // Fresh gradients of the parameters' dtype, the same on both sides; parameter 2 gets none on step 1.
  void set_grads(DType dtype, Generator& gen, int step) {
    for (size_t i = 0; i < cpu.size(); i++) {
      Tensor g = test::rounded_randn(cpu[i].shape(), gen, dtype).to(dtype);
      bool skip = i == 2 && step == 1;
      cpu[i].set_grad(skip ? Tensor() : g);
      gpu[i].set_grad(skip ? Tensor() : g.to(test::gpu()));
    }
  }
};

void expect_same_state(const std::vector<std::pair<std::string, Tensor>>& a,
                       const std::vector<std::pair<std::string, Tensor>>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(same_bits(a[i].second, b[i].second)) << a[i].first;
  }
}

}  // namespace

// Three steps of the whole optimizer on both devices: parameters, masters, moments and counts equal
// bit for bit, for each parameter dtype and rounding mode.
TEST(CudaOptim, FusedAdamWMatchesTheCpuBitForBit) {
  TG_REQUIRE_GPU();
  for (DType dtype : test::cuda_float_dtypes()) {
    for (bool stochastic : {false, true}) {
      if (dtype == DType::F32 && stochastic) continue;
      SCOPED_TRACE(std::string(dtype_name(dtype)) + (stochastic ? " stochastic" : " nearest"));
      Twin twin(dtype, 11);
      AdamW cpu_opt(Twin::groups(twin.cpu), 1e-2f, 0.9f, 0.95f, 1e-8f, stochastic, 3);
      AdamW gpu_opt(Twin::groups(twin.gpu), 1e-2f, 0.9f, 0.95f, 1e-8f, stochastic, 3);
      Generator gen(12);
      for (int step = 0; step < 3; step++) {
        twin.set_grads(dtype, gen, step);
        cpu_opt.step();
        gpu_opt.step();
        for (size_t i = 0; i < twin.cpu.size(); i++)
          EXPECT_TRUE(same_bits(twin.gpu[i], twin.cpu[i])) << "step " << step << ", size " << kSizes[i];
      }
      expect_same_state(gpu_opt.state_tensors(), cpu_opt.state_tensors());
    }
  }
}

TEST(CudaOptim, FusedAdamWIsDeterministic) {
  TG_REQUIRE_GPU();
  auto run = [] {
    Twin twin(DType::BF16, 21);
    AdamW opt(Twin::groups(twin.gpu), 1e-2f, 0.9f, 0.95f, 1e-8f, true, 5);
    Generator gen(22);
    for (int step = 0; step < 3; step++) {
      twin.set_grads(DType::BF16, gen, step);
      opt.step();
    }
    return twin.gpu;
  };
  std::vector<Tensor> a = run(), b = run();
  for (size_t i = 0; i < a.size(); i++) EXPECT_TRUE(same_bits(a[i], b[i])) << i;
}

// A checkpoint written on one device continues on the other, masters included: f32 masters
// (stochastic rounding) and masters kept as low bits (to nearest), whose state is assembled on and
// split from the host.
TEST(CudaOptim, AdamWStateMovesBetweenDevices) {
  TG_REQUIRE_GPU();
  for (bool stochastic : {true, false}) {
    SCOPED_TRACE(stochastic ? "stochastic" : "nearest");
    Twin twin(DType::BF16, 31);
    AdamW cpu_opt(Twin::groups(twin.cpu), 1e-2f, 0.9f, 0.95f, 1e-8f, stochastic, 9);
    Generator gen(32);
    twin.set_grads(DType::BF16, gen, 0);
    cpu_opt.step();
    SafetensorsData state;
    state.path = "cpu.safetensors";
    state.tensors = cpu_opt.state_tensors();
    for (size_t i = 0; i < twin.cpu.size(); i++) twin.gpu[i].copy_(twin.cpu[i]);
    AdamW gpu_opt(Twin::groups(twin.gpu), 1e-2f, 0.9f, 0.95f, 1e-8f, stochastic, 9);
    gpu_opt.load_state_tensors(state);
    for (int step = 1; step < 3; step++) {
      twin.set_grads(DType::BF16, gen, step);
      cpu_opt.step();
      gpu_opt.step();
    }
    for (size_t i = 0; i < twin.cpu.size(); i++) EXPECT_TRUE(same_bits(twin.gpu[i], twin.cpu[i])) << i;
    expect_same_state(gpu_opt.state_tensors(), cpu_opt.state_tensors());
  }
}

// One launch with a bf16 master of each form (an f32 master, and low bits beside the parameter):
// each follows the CPU kernel bit for bit, and the two forms hold the same masters.
TEST(CudaOptim, Bf16MasterFormsInOneLaunchMatchTheCpu) {
  TG_REQUIRE_GPU();
  Generator gen(33);
  const int64_t n = 100003;
  Tensor init = Tensor::randn({n}, &gen).to(DType::BF16);
  auto entries = [&](Device device) {
    ops::AdamWParam full, split;
    full.param = init.to(device).clone();
    full.master = init.to(DType::F32).to(device);
    split.param = init.to(device).clone();
    split.master_low = ops::exact_bf16_master_low(split.param);
    for (ops::AdamWParam* p : {&full, &split}) {
      p->m = Tensor::zeros({n}, DType::F32, device);
      p->v = Tensor::zeros({n}, DType::F32, device);
      p->weight_decay = 0.1f;
    }
    return std::vector<ops::AdamWParam>{full, split};
  };
  std::vector<ops::AdamWParam> cpu = entries(Device::cpu()), gpu = entries(test::gpu());
  ops::AdamWSettings settings;
  settings.lr = 3e-2f;
  for (int64_t step = 1; step <= 3; step++) {
    Tensor g = Tensor::randn({n}, &gen).to(DType::BF16);
    for (auto* list : {&cpu, &gpu})
      for (ops::AdamWParam& p : *list) {
        p.grad = g.to(p.param.device());
        p.step = step;
      }
    ops::adamw_update(cpu, settings);
    ops::adamw_update(gpu, settings);
    for (size_t k = 0; k < 2; k++) {
      EXPECT_TRUE(same_bits(gpu[k].param, cpu[k].param)) << "step " << step << ", entry " << k;
      EXPECT_TRUE(same_bits(gpu[k].m, cpu[k].m)) << "step " << step << ", entry " << k;
    }
    EXPECT_TRUE(same_bits(gpu[0].master, cpu[0].master)) << "step " << step;
    EXPECT_TRUE(same_bits(gpu[1].master_low, cpu[1].master_low)) << "step " << step;
    EXPECT_TRUE(same_bits(ops::join_bf16_master(gpu[1].param, gpu[1].master_low), gpu[0].master.to(Device::cpu())))
        << "step " << step;
  }
}

TEST(CudaOptim, SgdMatchesTheCpuBitForBit) {
  TG_REQUIRE_GPU();
  struct Config {
    const char* name;
    float momentum, dampening;
    bool nesterov;
  };
  for (const Config& c : {Config{"plain", 0.0f, 0.0f, false}, Config{"momentum, dampening", 0.9f, 0.1f, false},
                          Config{"nesterov", 0.9f, 0.0f, true}}) {
    SCOPED_TRACE(c.name);
    Twin twin(DType::F32, 41);
    SGD cpu_opt(Twin::groups(twin.cpu), 0.05f, c.momentum, c.dampening, c.nesterov);
    SGD gpu_opt(Twin::groups(twin.gpu), 0.05f, c.momentum, c.dampening, c.nesterov);
    Generator gen(42);
    for (int step = 0; step < 3; step++) {
      twin.set_grads(DType::F32, gen, step);
      cpu_opt.step();
      gpu_opt.step();
      for (size_t i = 0; i < twin.cpu.size(); i++)
        EXPECT_TRUE(same_bits(twin.gpu[i], twin.cpu[i])) << "step " << step << ", size " << kSizes[i];
    }
    expect_same_state(gpu_opt.state_tensors(), cpu_opt.state_tensors());
  }
}

namespace {

// Gradients of every dtype in one list (one launch per dtype, one final pass over all partials),
// the same values on both devices.
struct MixedGrads {
  std::vector<Tensor> cpu, gpu;
  explicit MixedGrads(uint64_t seed, float scale = 1.0f) {
    Generator gen(seed);
    for (DType dtype : test::cuda_float_dtypes())
      for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{8192}, int64_t{8193}, int64_t{100003}}) {
        Tensor g = test::rounded_randn({n}, gen, dtype, scale).to(dtype);
        cpu.push_back(g);
        gpu.push_back(g.to(test::gpu()));
      }
  }
};

}  // namespace

// The GPU sums squares of positive terms in f32: per thread up to 32 fused multiply-adds (32
// roundings), then block_sum's tree over 256 threads (8 levels), each rounding at most u = 2^-24
// relative with no cancellation, so the chunk partial is within 40u of exact; the partials are
// added in double (exact to ~1e-16) and the CPU's double sum is exact to ~1e-13. So the sums agree
// within 40 * 2^-24 = 2.4e-6 relative, and the norms (square roots) within half that.
TEST(CudaOptim, GlobalNormMatchesTheCpuAndIsDeterministic) {
  TG_REQUIRE_GPU();
  MixedGrads grads(51);
  const double cpu_sum = ops::sum_of_squares(grads.cpu), gpu_sum = ops::sum_of_squares(grads.gpu);
  EXPECT_LE(std::fabs(gpu_sum - cpu_sum), cpu_sum * 40 * std::ldexp(1.0, -24));
  EXPECT_EQ(ops::sum_of_squares(grads.gpu), gpu_sum) << "a second pass must give the same bits";
  for (size_t i = 0; i < grads.cpu.size(); i++) {
    const double one = ops::sum_of_squares(grads.cpu[i]);
    EXPECT_LE(std::fabs(ops::sum_of_squares(grads.gpu[i]) - one), one * 40 * std::ldexp(1.0, -24)) << i;
  }
  EXPECT_EQ(ops::sum_of_squares(std::vector<Tensor>{}), 0.0);
}

// clip_grad_norm on the GPU: the returned norm within the bound above (20u for the square root of
// a sum within 40u, plus one f32 rounding of the returned value), and the clipped gradients exactly
// the CPU scale kernel's result for the coefficient the GPU's norm gives (one multiply, rounded
// once). That norm is recomputed here before clipping: the same pass over the same list gives the
// same bits (previous test).
TEST(CudaOptim, ClipGradNormScalesLikeTheCpu) {
  TG_REQUIRE_GPU();
  MixedGrads grads(52);
  std::vector<Tensor> params;
  for (const Tensor& g : grads.gpu) {
    Tensor p = leaf_on(Tensor::zeros(g.shape(), g.dtype()), test::gpu());
    p.set_grad(g.clone());
    params.push_back(p);
  }
  const double cpu_norm = std::sqrt(ops::sum_of_squares(grads.cpu));
  const double gpu_norm = std::sqrt(ops::sum_of_squares(grads.gpu));
  const float norm = clip_grad_norm(params, 1.0f);
  EXPECT_EQ(norm, static_cast<float>(gpu_norm));
  EXPECT_LE(std::fabs(norm - cpu_norm), cpu_norm * 21 * std::ldexp(1.0, -24));
  const float coef = static_cast<float>(1.0 / (gpu_norm + 1e-6));  // clip_grad_norm's max_norm / (norm + 1e-6)
  ops::scale_(grads.cpu, coef);
  for (size_t i = 0; i < params.size(); i++) EXPECT_TRUE(same_bits(params[i].grad(), grads.cpu[i])) << i;
}

// The loss scaler's pass: x *= s rounded once, the same bits as the CPU, and the flag raised by an
// inf, by a NaN, and by a value that overflows only once scaled (f16 30000 * 4), in any tensor of
// the list; never raised for finite results.
TEST(CudaOptim, UnscaleAndNonFiniteFlagMatchTheCpu) {
  TG_REQUIRE_GPU();
  for (float s : {std::ldexp(1.0f, -16), 0.3f}) {
    MixedGrads grads(61, 1000.0f);
    const bool cpu_found = ops::scale_and_find_non_finite_(grads.cpu, s);
    const bool gpu_found = ops::scale_and_find_non_finite_(grads.gpu, s);
    EXPECT_FALSE(cpu_found);
    EXPECT_FALSE(gpu_found);
    for (size_t i = 0; i < grads.cpu.size(); i++) EXPECT_TRUE(same_bits(grads.gpu[i], grads.cpu[i])) << s << ", " << i;
  }
  struct Injection {
    const char* what;
    size_t tensor;     // index into MixedGrads (dtype-major: f32 0-4, bf16 5-9, f16 10-14)
    int64_t element;
    float value, scale;
  };
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const Injection& inj : {Injection{"inf in the last element of the largest f32 tensor", 4, 100002, inf, 0.5f},
                               Injection{"NaN in a 7-element bf16 tensor", 6, 3, nan, 0.5f},
                               Injection{"-inf in a one-element f16 tensor", 10, 0, -inf, 0.5f},
                               Injection{"f16 overflow made by the scale", 13, 8192, 30000.0f, 4.0f}}) {
    SCOPED_TRACE(inj.what);
    MixedGrads grads(62);
    for (std::vector<Tensor>* side : {&grads.cpu, &grads.gpu}) {
      Tensor& t = (*side)[inj.tensor];
      std::vector<float> values = t.to_vector();
      values[static_cast<size_t>(inj.element)] = inj.value;
      t.copy_(Tensor::from_vector(values, t.shape()));
    }
    EXPECT_TRUE(ops::scale_and_find_non_finite_(grads.cpu, inj.scale));
    EXPECT_TRUE(ops::scale_and_find_non_finite_(grads.gpu, inj.scale));
  }
}

// The scaler driving a GPU optimizer: an inf skips the step (parameters and state unchanged) and
// halves the scale; a clean step then goes ahead.
TEST(CudaOptim, GradScalerSkipsAnOverflowingStep) {
  TG_REQUIRE_GPU();
  Twin twin(DType::F16, 71);
  AdamW opt(Twin::groups(twin.gpu), 1e-2f);
  GradScaler scaler;
  Generator gen(72);
  twin.set_grads(DType::F16, gen, 0);
  std::vector<Tensor> before;
  for (const Tensor& p : twin.gpu) before.push_back(p.clone());
  std::vector<float> values = twin.gpu[3].grad().to_vector();
  values[99999] = std::numeric_limits<float>::infinity();
  twin.gpu[3].grad().copy_(Tensor::from_vector(values, twin.gpu[3].shape()));
  EXPECT_FALSE(scaler.step(opt));
  scaler.update();
  for (size_t i = 0; i < before.size(); i++) EXPECT_TRUE(same_bits(twin.gpu[i], before[i])) << i;
  EXPECT_EQ(scaler.scale(), 32768.0f);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_EQ(opt.state_tensors()[0].second.to_int_vector()[0], 0) << "adamw.step: no step taken";
  twin.set_grads(DType::F16, gen, 1);
  EXPECT_TRUE(scaler.step(opt));
  scaler.update();
  EXPECT_FALSE(same_bits(twin.gpu[0], before[0]));
}
