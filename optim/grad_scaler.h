// Dynamic loss scaling for half-precision training, with torch.amp.GradScaler's semantics.
//
// f16 gradients underflow: values below 2^-24 become zero. Multiplying the loss by a large scale
// (2^16 to start) lifts the whole backward pass into f16's range; the gradients are divided by the
// scale again before the optimizer sees them. When the scale was too large some gradient overflows
// to inf (or a NaN appears): that step is skipped and the scale halved. After growth_interval clean
// steps in a row the scale doubles, to find the largest scale that does not overflow. With powers
// of two for every factor the scaling is exact: an f32 run with the scaler matches one without it
// bit for bit. bf16 has f32's exponent range and rarely needs this; disabled, the scaler passes
// everything through, so a trainer can drive every precision the same way.
//
// One step, as a trainer drives it:
//   optimizer.zero_grad();
//   for each micro-batch: scaler.backward(loss, 1.0f / micro_batches);
//   scaler.unscale_(params);                   // optional: only to look at or clip true gradients
//   clip_grad_norm(params, max_norm);
//   if (!scaler.step(optimizer)) ...           // false: skipped (inf/NaN); see skipped_steps()
//   scaler.update();
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "optim/param_group.h"
#include "tensor/safetensors.h"
#include "tensor/tensor.h"

namespace tg {

struct GradScalerOptions {
  float init_scale = 65536.0f;  // 2^16
  float growth_factor = 2.0f;
  float backoff_factor = 0.5f;
  int64_t growth_interval = 2000;
  bool enabled = true;
};

class GradScaler {
 public:
  // Throws tg::Error unless init_scale > 0 and finite, growth_factor > 1, 0 < backoff_factor < 1
  // and growth_interval >= 1.
  explicit GradScaler(GradScalerOptions options = {});

  bool enabled() const { return options_.enabled; }
  // The current scale (1 when disabled).
  float scale() const { return options_.enabled ? scale_ : 1.0f; }
  // Clean steps since the scale last changed.
  int64_t growth_tracker() const { return growth_tracker_; }
  // Optimizer steps skipped because a gradient was inf or NaN.
  int64_t skipped_steps() const { return skipped_steps_; }

  // The seed gradient for backward: `seed` (1, or 1/micro_batches for a mean) times scale(),
  // shaped like the loss, on its device and of its dtype.
  Tensor loss_grad(const Tensor& loss, float seed = 1.0f) const;
  // tg::backward(loss, loss_grad(loss, seed)): the gradients come out multiplied by scale().
  void backward(const Tensor& loss, float seed = 1.0f) const;

  // Divides every defined .grad of `params` by the scale (multiplies by the f32 of 1/scale, as
  // PyTorch does) and checks them for inf/NaN, in one pass: on CUDA one multi-tensor launch per
  // gradient dtype and one host read of the flag. Returns true when every gradient is finite.
  // Idempotent within a step, like PyTorch: until update(), further calls (and step()) change
  // nothing and return the first answer; a later call naming other parameters throws. Disabled:
  // returns true and touches nothing.
  bool unscale_(const std::vector<Tensor>& params);

  // Unscales the optimizer's gradients unless unscale_ already did this step, then calls
  // optimizer.step() unless a gradient was inf or NaN. Returns true when the step was taken; a
  // skipped step leaves parameters and optimizer state untouched and counts in skipped_steps().
  // Disabled: optimizer.step(), true. Works with any optimizer that has groups() and step().
  template <class Optimizer>
  bool step(Optimizer& optimizer) {
    if (!should_step(optimizer.groups())) return false;
    optimizer.step();
    return true;
  }

  // Ends the step: halves the scale (backoff_factor) when this step found inf/NaN, and multiplies
  // it by growth_factor after growth_interval clean steps in a row (when the result is finite).
  // Throws when enabled and nothing was unscaled since the last update (no overflow check was made).
  void update();

  // State for checkpoints: "grad_scaler.scale" (f32 scalar), "grad_scaler.growth_tracker" and
  // "grad_scaler.skipped_steps" (i32 scalars).
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  // Restores what state_tensors() wrote. A `data` with none of the three (a checkpoint of a run
  // without a scaler) leaves the scaler as it is; one with only some of them, or with a wrong
  // dtype, shape or value, throws tg::Error and changes nothing. Other tensors are ignored.
  void load_state_tensors(const SafetensorsData& data);

 private:
  // step()'s decision, for any optimizer's groups: unscales if needed, counts a skip.
  bool should_step(const std::vector<ParamGroup>& groups);

  GradScalerOptions options_;
  float scale_;
  int64_t growth_tracker_ = 0;
  int64_t skipped_steps_ = 0;
  // This step's unscale: whether it happened, what it found, and which parameters it covered.
  bool unscaled_ = false;
  bool found_non_finite_ = false;
  std::vector<const TensorImpl*> unscaled_params_;
};

}  // namespace tg
