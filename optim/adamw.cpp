#include "optim/adamw.h"

#include <limits>
#include <set>

#include "autograd/engine.h"
#include "ops/optim.h"
#include "ops/optim_math.h"

namespace tg {

static std::string moment_name(const char* which, size_t g, size_t i) {
  return std::string("adamw.") + which + "." + std::to_string(g) + "." + std::to_string(i);
}
static bool is_half(DType dtype) { return dtype == DType::BF16 || dtype == DType::F16; }

// An f32 copy of `t` on its device.
static Tensor widened(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), DType::F32, t.device());
  out.copy_(t);
  return out;
}

// A bf16 parameter rounded to nearest keeps its master as its own bits plus 16 low bits
// (ops/optim_math.h): 2 bytes per element beside the parameter instead of a 4-byte f32 copy.
static bool splits_master(DType dtype, bool stochastic_rounding) { return dtype == DType::BF16 && !stochastic_rounding; }

static std::string steps_name(size_t g) { return "adamw.steps." + std::to_string(g); }
static const char* const kStepName = "adamw.step";

static void check_beta(const char* name, float beta) {
  if (!(beta >= 0.0f && beta < 1.0f))
    throw Error(std::string("AdamW: ") + name + " must be in [0, 1), got " + std::to_string(beta));
}

AdamW::AdamW(std::vector<ParamGroup> groups, float lr, float beta1, float beta2, float eps, bool stochastic_rounding,
             uint64_t seed)
    : groups_(std::move(groups)), lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps),
      stochastic_rounding_(stochastic_rounding), seed_(seed) {
  check_non_negative("AdamW", "lr", lr);
  check_non_negative("AdamW", "eps", eps);
  check_beta("beta1", beta1);
  check_beta("beta2", beta2);
  check_param_groups("AdamW", groups_, /*allow_half=*/true);
  for (const ParamGroup& group : groups_) state_.emplace_back(group.params.size());
}

void AdamW::set_lr(float lr) {
  check_non_negative("AdamW", "lr", lr);
  lr_ = lr;
}

void AdamW::step() {
  NoGrad no_grad;
  step_count_++;
  std::vector<ops::AdamWParam> updates;
  uint64_t stream = 0;  // the parameter's position across groups: tells tensors' random bits apart
  for (size_t g = 0; g < groups_.size(); g++) {
    for (size_t i = 0; i < groups_[g].params.size(); i++, stream++) {
      const Tensor& param = groups_[g].params[i];
      Tensor grad = param.grad();
      if (!grad.defined()) continue;
      ParamState& s = state_[g][i];
      if (!s.m.defined()) {
        s.m = Tensor::zeros(param.shape(), DType::F32, param.device());
        s.v = Tensor::zeros(param.shape(), DType::F32, param.device());
      }
      if (splits_master(param.dtype(), stochastic_rounding_)) {
        if (!s.master_low.defined()) s.master_low = ops::exact_bf16_master_low(param);
      } else if (is_half(param.dtype()) && !s.master.defined()) {
        s.master = widened(param);
      }
      s.step++;
      ops::AdamWParam u;
      u.param = param;
      u.grad = grad;
      u.master = s.master;
      u.master_low = s.master_low;
      u.m = s.m;
      u.v = s.v;
      u.weight_decay = groups_[g].weight_decay;
      u.step = s.step;
      u.rounding_key = optim_math::rounding_key(seed_, s.step, stream);
      updates.push_back(u);
    }
  }
  ops::AdamWSettings settings;
  settings.lr = lr_;
  settings.beta1 = beta1_;
  settings.beta2 = beta2_;
  settings.eps = eps_;
  settings.stochastic_rounding = stochastic_rounding_;
  ops::adamw_update(updates, settings);
}

void AdamW::zero_grad() {
  for (const ParamGroup& group : groups_)
    for (const Tensor& p : group.params) {
      Tensor grad = p.grad();
      if (grad.defined()) grad.zero_();
    }
}

// Counts go to disk as i32: 2^31 steps is far beyond any run this framework will do, and the
// format's readers all know I32.
static int32_t count_as_i32(int64_t count, const char* what) {
  if (count < 0 || count > std::numeric_limits<int32_t>::max())
    throw Error(std::string("AdamW::state_tensors: ") + what + " " + std::to_string(count) + " does not fit in i32");
  return static_cast<int32_t>(count);
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  out.emplace_back(kStepName, Tensor::from_ints({count_as_i32(step_count_, "step count")}, {}));
  for (size_t g = 0; g < groups_.size(); g++) {
    std::vector<int32_t> steps;
    for (size_t i = 0; i < groups_[g].params.size(); i++) {
      const ParamState& s = state_[g][i];
      const Tensor& param = groups_[g].params[i];
      out.emplace_back(moment_name("m", g, i), s.m.defined() ? s.m : Tensor::zeros(param.shape(), DType::F32, param.device()));
      out.emplace_back(moment_name("v", g, i), s.v.defined() ? s.v : Tensor::zeros(param.shape(), DType::F32, param.device()));
      if (is_half(param.dtype()))
        out.emplace_back(moment_name("master", g, i), s.master_low.defined() ? ops::join_bf16_master(param, s.master_low)
                                                      : s.master.defined() ? s.master
                                                                           : widened(param));
      steps.push_back(count_as_i32(s.step, "parameter update count"));
    }
    out.emplace_back(steps_name(g), Tensor::from_ints(steps, {static_cast<int64_t>(steps.size())}));
  }
  return out;
}

void AdamW::load_state_tensors(const SafetensorsData& data) {
  const std::string where = "AdamW::load_state_tensors: " + data.path + ": ";
  std::set<std::string> used;
  auto find = [&](const std::string& name, DType dtype, const Shape& shape) -> const Tensor& {
    if (!data.contains(name))
      throw Error(where + "missing optimizer state \"" + name + "\" (a checkpoint without AdamW state, or of another model?)");
    const Tensor& t = data.at(name);
    if (t.dtype() != dtype || t.shape() != shape)
      throw Error(where + "\"" + name + "\" is " + dtype_name(t.dtype()) + " " + shape_str(t.shape()) + ", expected " +
                  dtype_name(dtype) + " " + shape_str(shape));
    used.insert(name);
    return t;
  };

  // Check and copy everything into fresh state first; swap it in only when all of it is good.
  int64_t step_count = find(kStepName, DType::I32, {}).to_int_vector()[0];
  if (step_count < 0) throw Error(where + "\"" + kStepName + "\" is negative (" + std::to_string(step_count) + ")");
  std::vector<std::vector<ParamState>> state(groups_.size());
  std::vector<std::pair<Tensor, Tensor>> into_params;  // params and the values they take from the masters
  for (size_t g = 0; g < groups_.size(); g++) {
    size_t n = groups_[g].params.size();
    std::vector<int32_t> steps = find(steps_name(g), DType::I32, {static_cast<int64_t>(n)}).to_int_vector();
    state[g].resize(n);
    for (size_t i = 0; i < n; i++) {
      const Tensor& param = groups_[g].params[i];
      ParamState& s = state[g][i];
      if (steps[i] < 0)
        throw Error(where + "\"" + steps_name(g) + "\"[" + std::to_string(i) + "] is negative (" + std::to_string(steps[i]) + ")");
      s.step = steps[i];
      s.m = Tensor::empty(param.shape(), DType::F32, param.device());
      s.m.copy_(find(moment_name("m", g, i), DType::F32, param.shape()));
      s.v = Tensor::empty(param.shape(), DType::F32, param.device());
      s.v.copy_(find(moment_name("v", g, i), DType::F32, param.shape()));
      // Masters: see the header for why each case does what it does.
      const std::string master = moment_name("master", g, i);
      if (data.contains(master)) {
        const Tensor& saved = find(master, DType::F32, param.shape());
        if (splits_master(param.dtype(), stochastic_rounding_)) {
          // The parameter must be the master's rounding for the pair to hold the master. It already
          // is unless the state came from a run rounding otherwise (stochastically, or an f32 master
          // rounded ties to even), and then the master is the better copy.
          auto [rounded, low] = ops::split_bf16_master(saved, param.device());
          s.master_low = low;
          into_params.emplace_back(param, rounded);
        } else if (is_half(param.dtype())) {
          s.master = Tensor::empty(param.shape(), DType::F32, param.device());
          s.master.copy_(saved);
        } else {
          into_params.emplace_back(param, saved);
        }
      }
    }
  }
  for (const auto& entry : data.tensors)
    if (entry.first.compare(0, 6, "adamw.") == 0 && !used.count(entry.first))
      throw Error(where + "\"" + entry.first + "\" names no state of this optimizer (" + std::to_string(groups_.size()) +
                  " groups; a checkpoint of another model?)");
  NoGrad no_grad;
  for (auto& [param, value] : into_params) param.copy_(value);
  state_ = std::move(state);
  step_count_ = step_count;
}

size_t AdamW::state_bytes() const {
  size_t bytes = 0;
  for (const auto& group : state_)
    for (const ParamState& s : group)
      for (const Tensor* t : {&s.m, &s.v, &s.master, &s.master_low})
        if (t->defined()) bytes += t->nbytes();
  return bytes;
}

}  // namespace tg
