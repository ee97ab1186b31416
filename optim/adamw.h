// AdamW (Adam with decoupled weight decay), with torch.optim.AdamW's semantics; the update
// formula is in ops/optim.h. Weight decay is per parameter group, so biases, norm gains and
// embeddings can go in a group without it.
//
// Mixed precision: parameters may be f32, bf16 or f16. A bf16/f16 parameter gets an f32 master
// (made from its values at its first update); the update reads the half gradient as f32, updates
// the master and the f32 moments in f32, and writes the parameter as the master rounded to
// nearest, or stochastically (unbiased: small updates survive on average) when constructed with
// stochastic_rounding. The random bits come from a counter-based hash of (seed, the parameter's
// update count, its position in the optimizer, the element index), so runs and resumed runs are
// reproducible and the CPU and CUDA kernels draw the same bits.
//
// A bf16 parameter rounded to nearest is its master's top half (rounded, ties toward zero), so its
// master is kept as the 16 bits that complete it: 2 bytes per element, not 4, and still the exact
// f32 master (ops/optim_math.h). f16 parameters, and stochastic rounding, keep an f32 copy.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "optim/optimizer.h"
#include "optim/param_group.h"
#include "tensor/safetensors.h"

namespace tg {

class AdamW : public Optimizer {
 public:
  // Throws tg::Error for a negative lr or eps, betas outside [0, 1), and bad groups (see
  // check_param_groups; i32 and u8 parameters are refused). `stochastic_rounding` and `seed` only
  // matter for bf16/f16 parameters.
  AdamW(std::vector<ParamGroup> groups, float lr, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f,
        bool stochastic_rounding = false, uint64_t seed = 0);

  // Updates every parameter whose .grad is defined, under NoGrad, in one multi-tensor update (on
  // CUDA one launch per parameter dtype). As in PyTorch, each parameter counts its own updates for
  // the bias correction, and its moments start as zeros on its first update; a parameter without a
  // gradient is left alone, moments and count included. A gradient has its parameter's dtype.
  const char* name() const override { return "AdamW"; }
  void step() override;
  // Zeroes the existing .grad tensors in place (their buffers are kept for the next backward).
  void zero_grad() override;
  void set_lr(float lr) override;
  float lr() const override { return lr_; }
  int64_t step_count() const { return step_count_; }  // calls to step()
  const std::vector<ParamGroup>& groups() const override { return groups_; }
  // The moments and masters held now: 8 bytes per updated element, plus 2 (bf16 rounded to
  // nearest) or 4 (f16, or stochastic rounding) for a half parameter's master.
  size_t state_bytes() const override;

  // The state for checkpoints, all f32 except the counts:
  //   "adamw.m.<group>.<index>", "adamw.v.<group>.<index>"  first and second moments (zeros for a
  //                                                          parameter not yet updated)
  //   "adamw.master.<group>.<index>"  the f32 master weights of a bf16/f16 parameter (its values
  //                                   widened to f32 when not yet updated); none for f32 ones
  //   "adamw.steps.<group>"  i32 (params in group): each parameter's update count
  //   "adamw.step"           i32 scalar: step_count()
  // The moments and f32 masters are the live tensors: save them before the next step(). A master
  // kept as low bits is assembled into a fresh f32 tensor on the CPU.
  std::vector<std::pair<std::string, Tensor>> state_tensors() const override;
  // Restores exactly what state_tensors() returned, so that training continues bit for bit as if
  // it had not stopped. Other tensors in `data` (the model's) are ignored. Throws tg::Error,
  // changing nothing, when a tensor is missing, has the wrong shape or dtype, or names a parameter
  // this optimizer does not have.
  //
  // Masters across precisions (a checkpoint may be resumed with another --dtype), decided so that
  // the most precise copy of each weight wins:
  //   - a bf16/f16 parameter whose master is in `data` gets that master; the parameter itself is
  //     left as the model load set it (with stochastic rounding it is not round(master), and
  //     resuming must not change it), except where it keeps the master as low bits: there it is
  //     set to the master's rounding, which it already is when the state is from such a run;
  //   - a bf16/f16 parameter without one (a state from an f32 run) gets its master made from its
  //     current values at its next update, as on a first update;
  //   - an f32 parameter with a master in `data` (a state from a half run) has the master copied
  //     INTO it: the master holds the weight's full precision, the model tensor only its rounding.
  // So load the model first, then this state (as the trainer does).
  void load_state_tensors(const SafetensorsData& data) override;

 private:
  struct ParamState {
    Tensor m, v;       // undefined until the first update
    Tensor master;     // f32 copy of an f16 parameter, or of a bf16 one rounded stochastically
    Tensor master_low; // or, for a bf16 parameter rounded to nearest, the low bits that complete it
                       // (both undefined until the first update, and for f32 parameters)
    int64_t step = 0;  // updates so far
  };

  std::vector<ParamGroup> groups_;
  std::vector<std::vector<ParamState>> state_;  // [group][index]
  float lr_, beta1_, beta2_, eps_;
  bool stochastic_rounding_;
  uint64_t seed_;
  int64_t step_count_ = 0;
};

}  // namespace tg
