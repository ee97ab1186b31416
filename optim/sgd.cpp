#include "optim/sgd.h"

#include <map>

#include "autograd/engine.h"
#include "ops/optim.h"

namespace tg {

static const std::string kMomentumPrefix = "sgd.momentum.";

SGD::SGD(std::vector<ParamGroup> groups, float lr, float momentum, float dampening, bool nesterov)
    : groups_(std::move(groups)), lr_(lr), momentum_factor_(momentum), dampening_(dampening), nesterov_(nesterov) {
  check_non_negative("SGD", "lr", lr);
  check_non_negative("SGD", "momentum", momentum);
  check_non_negative("SGD", "dampening", dampening);
  if (nesterov && (momentum <= 0.0f || dampening != 0.0f))
    throw Error("SGD: Nesterov momentum requires momentum > 0 and dampening 0, got momentum " + std::to_string(momentum) +
                " and dampening " + std::to_string(dampening));
  check_param_groups("SGD", groups_, /*allow_half=*/false);
  for (const ParamGroup& group : groups_) momentum_.emplace_back(group.params.size());
}

void SGD::set_lr(float lr) {
  check_non_negative("SGD", "lr", lr);
  lr_ = lr;
}

void SGD::step() {
  NoGrad no_grad;
  for (size_t g = 0; g < groups_.size(); g++) {
    for (size_t i = 0; i < groups_[g].params.size(); i++) {
      Tensor param = groups_[g].params[i];
      Tensor grad = param.grad();
      if (!grad.defined()) continue;
      Tensor& buf = momentum_[g][i];
      bool first_step = false;
      if (momentum_factor_ != 0.0f && !buf.defined()) {
        // Its contents do not matter: the first step sets it to the gradient.
        buf = Tensor::empty(param.shape(), DType::F32, param.device());
        first_step = true;
      }
      ops::sgd_update(param, grad, buf, lr_, momentum_factor_, dampening_, groups_[g].weight_decay, nesterov_, first_step);
    }
  }
}

void SGD::zero_grad() {
  for (const ParamGroup& group : groups_)
    for (const Tensor& p : group.params) {
      Tensor grad = p.grad();
      if (grad.defined()) grad.zero_();
    }
}

std::vector<std::pair<std::string, Tensor>> SGD::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t g = 0; g < groups_.size(); g++)
    for (size_t i = 0; i < groups_[g].params.size(); i++)
      if (momentum_[g][i].defined())
        out.emplace_back(kMomentumPrefix + std::to_string(g) + "." + std::to_string(i), momentum_[g][i]);
  return out;
}

void SGD::load_state_tensors(const SafetensorsData& data) {
  const std::string where = "SGD::load_state_tensors: " + data.path + ": ";
  std::map<std::string, std::pair<size_t, size_t>> expected;  // name -> (group, index)
  for (size_t g = 0; g < groups_.size(); g++)
    for (size_t i = 0; i < groups_[g].params.size(); i++)
      expected[kMomentumPrefix + std::to_string(g) + "." + std::to_string(i)] = {g, i};
  // Check everything before changing anything, so a bad file leaves the optimizer as it was.
  std::vector<std::vector<Tensor>> loaded(groups_.size());
  for (size_t g = 0; g < groups_.size(); g++) loaded[g].resize(groups_[g].params.size());
  for (const auto& [name, tensor] : data.tensors) {
    if (name.compare(0, 4, "sgd.") != 0) continue;
    auto it = expected.find(name);
    if (it == expected.end())
      throw Error(where + "\"" + name + "\" names no parameter of this optimizer (a checkpoint of another model?)");
    auto [g, i] = it->second;
    const Tensor& param = groups_[g].params[i];
    if (tensor.shape() != param.shape() || tensor.dtype() != DType::F32)
      throw Error(where + "\"" + name + "\" is " + dtype_name(tensor.dtype()) + " " + shape_str(tensor.shape()) +
                  " but the parameter is f32 " + shape_str(param.shape()));
    Tensor buf = Tensor::empty(param.shape(), DType::F32, param.device());
    buf.copy_(tensor);
    loaded[g][i] = buf;
  }
  momentum_ = std::move(loaded);
}

size_t SGD::state_bytes() const {
  size_t bytes = 0;
  for (const auto& group : momentum_)
    for (const Tensor& buffer : group)
      if (buffer.defined()) bytes += buffer.nbytes();
  return bytes;
}

}  // namespace tg
