// AdamW (Adam with decoupled weight decay), with torch.optim.AdamW's semantics; the update
// formula is in ops/optim.h. Weight decay is per parameter group, so biases, norm gains and
// embeddings can go in a group without it.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "optim/param_group.h"
#include "tensor/safetensors.h"

namespace tg {

class AdamW {
 public:
  // Throws tg::Error for a negative lr or eps, betas outside [0, 1), and bad groups (see
  // check_param_groups).
  AdamW(std::vector<ParamGroup> groups, float lr, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f);

  // Updates every parameter whose .grad is defined, under NoGrad. As in PyTorch, each parameter
  // counts its own updates for the bias correction, and its moments start as zeros on its first
  // update; a parameter without a gradient is left alone, moments and count included.
  void step();
  // Zeroes the existing .grad tensors in place (their buffers are kept for the next backward).
  void zero_grad();
  void set_lr(float lr);
  float lr() const { return lr_; }
  int64_t step_count() const { return step_count_; }  // calls to step()
  const std::vector<ParamGroup>& groups() const { return groups_; }

  // The state for checkpoints, all f32 except the counts:
  //   "adamw.m.<group>.<index>", "adamw.v.<group>.<index>"  first and second moments (zeros for a
  //                                                          parameter not yet updated)
  //   "adamw.steps.<group>"  i32 (params in group): each parameter's update count
  //   "adamw.step"           i32 scalar: step_count()
  // The moments are the live tensors: save them before the next step().
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  // Restores exactly what state_tensors() returned, so that training continues bit for bit as if
  // it had not stopped. Other tensors in `data` (the model's) are ignored. Throws tg::Error,
  // changing nothing, when a tensor is missing, has the wrong shape or dtype, or names a parameter
  // this optimizer does not have.
  void load_state_tensors(const SafetensorsData& data);

 private:
  struct ParamState {
    Tensor m, v;       // undefined until the first update
    int64_t step = 0;  // updates so far
  };

  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> state_;  // [group][index]
  float lr_, beta1_, beta2_, eps_;
  int64_t step_count_ = 0;
};

}  // namespace tg
