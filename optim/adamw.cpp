#include "optim/adamw.h"

#include <limits>
#include <set>

#include "autograd/engine.h"
#include "ops/optim.h"

namespace tg {

static std::string moment_name(const char* which, size_t g, size_t i) {
  return std::string("adamw.") + which + "." + std::to_string(g) + "." + std::to_string(i);
}
static std::string steps_name(size_t g) { return "adamw.steps." + std::to_string(g); }
static const char* const kStepName = "adamw.step";

static void check_beta(const char* name, float beta) {
  if (!(beta >= 0.0f && beta < 1.0f))
    throw Error(std::string("AdamW: ") + name + " must be in [0, 1), got " + std::to_string(beta));
}

AdamW::AdamW(std::vector<ParamGroup> groups, float lr, float beta1, float beta2, float eps)
    : groups_(std::move(groups)), lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps) {
  check_non_negative("AdamW", "lr", lr);
  check_non_negative("AdamW", "eps", eps);
  check_beta("beta1", beta1);
  check_beta("beta2", beta2);
  check_param_groups("AdamW", groups_);
  for (const ParamGroup& group : groups_) state_.emplace_back(group.params.size());
}

void AdamW::set_lr(float lr) {
  check_non_negative("AdamW", "lr", lr);
  lr_ = lr;
}

void AdamW::step() {
  NoGrad no_grad;
  step_count_++;
  for (size_t g = 0; g < groups_.size(); g++) {
    for (size_t i = 0; i < groups_[g].params.size(); i++) {
      Tensor param = groups_[g].params[i];
      Tensor grad = param.grad();
      if (!grad.defined()) continue;
      ParamState& s = state_[g][i];
      if (!s.m.defined()) {
        s.m = Tensor::zeros(param.shape(), DType::F32, param.device());
        s.v = Tensor::zeros(param.shape(), DType::F32, param.device());
      }
      s.step++;
      ops::adamw_update(param, grad, s.m, s.v, lr_, beta1_, beta2_, eps_, groups_[g].weight_decay, s.step);
    }
  }
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
    }
  }
  for (const auto& entry : data.tensors)
    if (entry.first.compare(0, 6, "adamw.") == 0 && !used.count(entry.first))
      throw Error(where + "\"" + entry.first + "\" names no state of this optimizer (" + std::to_string(groups_.size()) +
                  " groups; a checkpoint of another model?)");
  state_ = std::move(state);
  step_count_ = step_count;
}

}  // namespace tg
