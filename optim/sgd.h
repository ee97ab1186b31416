// Stochastic gradient descent with momentum, dampening, Nesterov and weight decay, with
// torch.optim.SGD's semantics (the update formula is in ops/optim.h).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "optim/optimizer.h"
#include "optim/param_group.h"
#include "tensor/safetensors.h"

namespace tg {

class SGD : public Optimizer {
 public:
  // Throws tg::Error for a negative lr or momentum, for Nesterov without momentum or with
  // dampening (as PyTorch does), and for bad groups (see check_param_groups).
  SGD(std::vector<ParamGroup> groups, float lr, float momentum = 0, float dampening = 0, bool nesterov = false);

  // Updates every parameter whose .grad is defined, under NoGrad; the others keep their values and
  // momentum. Momentum buffers are created on a parameter's first update.
  const char* name() const override { return "SGD"; }
  void step() override;
  // Zeroes the existing .grad tensors in place (their buffers are kept for the next backward).
  void zero_grad() override;
  void set_lr(float lr) override;
  float lr() const override { return lr_; }
  const std::vector<ParamGroup>& groups() const override { return groups_; }
  size_t state_bytes() const override;  // the momentum buffers

  // Momentum buffers for checkpoints, named "sgd.momentum.<group>.<index>"; a parameter never
  // updated has none. The tensors are the live buffers: save them before the next step().
  std::vector<std::pair<std::string, Tensor>> state_tensors() const override;
  // Restores exactly what state_tensors() returned (other tensors in `data` are ignored). Throws,
  // changing nothing, when a buffer names a parameter this optimizer lacks or has the wrong shape.
  void load_state_tensors(const SafetensorsData& data) override;

 private:
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<Tensor>> momentum_;  // [group][index]; undefined until the first update
  float lr_, momentum_factor_, dampening_;
  bool nesterov_;
};

}  // namespace tg
