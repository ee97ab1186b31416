// The one interface a training loop drives every optimizer through (AdamW and SGD today), so the
// loop, the loss scaler and the checkpoints are written once whatever --optimizer says.
//
// It is small on purpose: the step, the gradients, the learning rate the schedule sets, the
// parameter groups (the loss scaler unscales and checks their gradients), and the state a
// checkpoint needs to continue bit for bit. Each optimizer's own settings stay in its constructor.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "optim/param_group.h"
#include "tensor/safetensors.h"

namespace tg {

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  virtual const char* name() const = 0;  // "AdamW", "SGD": for messages
  // Updates every parameter whose .grad is defined, under NoGrad.
  virtual void step() = 0;
  // Zeroes the existing .grad tensors in place (their buffers are kept for the next backward).
  virtual void zero_grad() = 0;
  virtual void set_lr(float lr) = 0;
  virtual float lr() const = 0;
  virtual const std::vector<ParamGroup>& groups() const = 0;
  // Bytes of state this optimizer holds beside the parameters and gradients (moments, masters,
  // momentum; a sharded optimizer's own shard).
  virtual size_t state_bytes() const = 0;

  // The state for checkpoints, each tensor's name prefixed with the optimizer's own ("adamw.",
  // "sgd."), so that one optimizer's loader ignores the other's tensors. The tensors are the live
  // buffers (or fresh copies, where the optimizer keeps a state in another form): save them before
  // the next step().
  virtual std::vector<std::pair<std::string, Tensor>> state_tensors() const = 0;
  // Restores exactly what state_tensors() returned; throws tg::Error, changing nothing, on a state
  // of another model.
  virtual void load_state_tensors(const SafetensorsData& data) = 0;
};

}  // namespace tg
