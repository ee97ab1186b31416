#include "optim/grad_scaler.h"

#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "ops/optim.h"

namespace tg {

static const char* const kScaleName = "grad_scaler.scale";
static const char* const kGrowthTrackerName = "grad_scaler.growth_tracker";
static const char* const kSkippedStepsName = "grad_scaler.skipped_steps";

GradScaler::GradScaler(GradScalerOptions options) : options_(options), scale_(options.init_scale) {
  auto fail = [](const std::string& what) { throw Error("GradScaler: " + what); };
  if (!(options.init_scale > 0.0f) || !std::isfinite(options.init_scale))
    fail("init_scale must be finite and > 0, got " + std::to_string(options.init_scale));
  if (!(options.growth_factor > 1.0f) || !std::isfinite(options.growth_factor))
    fail("growth_factor must be finite and > 1, got " + std::to_string(options.growth_factor));
  if (!(options.backoff_factor > 0.0f && options.backoff_factor < 1.0f))
    fail("backoff_factor must be in (0, 1), got " + std::to_string(options.backoff_factor));
  if (options.growth_interval < 1) fail("growth_interval must be >= 1, got " + std::to_string(options.growth_interval));
}

Tensor GradScaler::loss_grad(const Tensor& loss, float seed) const {
  if (!loss.defined()) throw Error("GradScaler::loss_grad: loss is an undefined tensor");
  return Tensor::full(loss.shape(), seed * scale(), loss.dtype(), loss.device());
}

void GradScaler::backward(const Tensor& loss, float seed) const { tg::backward(loss, loss_grad(loss, seed)); }

bool GradScaler::unscale_(const std::vector<Tensor>& params) {
  if (!options_.enabled) return true;
  std::vector<const TensorImpl*> ids;
  for (const Tensor& p : params) ids.push_back(p.impl_ptr());
  if (unscaled_) {
    if (ids != unscaled_params_)
      throw Error("GradScaler::unscale_: this step already unscaled a different list of parameters; "
                  "call update() before unscaling again");
    return !found_non_finite_;
  }
  NoGrad no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) grads.push_back(g);
  }
  // PyTorch's inverse: 1/scale in double, rounded to f32 (exact for the usual powers of two).
  const float inv_scale = static_cast<float>(1.0 / static_cast<double>(scale_));
  found_non_finite_ = ops::scale_and_find_non_finite_(grads, inv_scale);
  unscaled_ = true;
  unscaled_params_ = std::move(ids);
  return !found_non_finite_;
}

bool GradScaler::should_step(const std::vector<ParamGroup>& groups) {
  if (!options_.enabled) return true;
  if (!unscaled_) {
    std::vector<Tensor> params;
    for (const ParamGroup& group : groups) params.insert(params.end(), group.params.begin(), group.params.end());
    unscale_(params);
  }
  if (found_non_finite_) {
    skipped_steps_++;
    return false;
  }
  return true;
}

void GradScaler::update() {
  if (!options_.enabled) return;
  if (!unscaled_)
    throw Error("GradScaler::update: no unscale_() or step() since the last update(), so no inf/NaN check was made "
                "for this step");
  if (found_non_finite_) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ >= options_.growth_interval) {  // >=: a resumed run may have a shorter interval
    const float grown = scale_ * options_.growth_factor;
    if (std::isfinite(grown)) scale_ = grown;
    growth_tracker_ = 0;
  }
  unscaled_ = false;
  found_non_finite_ = false;
  unscaled_params_.clear();
}

// Counts are saved as i32, like the optimizers' (2^31 steps is far beyond any run).
static int32_t count_as_i32(int64_t count, const char* what) {
  if (count < 0 || count > std::numeric_limits<int32_t>::max())
    throw Error(std::string("GradScaler::state_tensors: ") + what + " " + std::to_string(count) + " does not fit in i32");
  return static_cast<int32_t>(count);
}

std::vector<std::pair<std::string, Tensor>> GradScaler::state_tensors() const {
  return {{kScaleName, Tensor::scalar(scale_)},
          {kGrowthTrackerName, Tensor::from_ints({count_as_i32(growth_tracker_, "growth tracker")}, {})},
          {kSkippedStepsName, Tensor::from_ints({count_as_i32(skipped_steps_, "skipped steps")}, {})}};
}

void GradScaler::load_state_tensors(const SafetensorsData& data) {
  const std::string where = "GradScaler::load_state_tensors: " + data.path + ": ";
  const int present = static_cast<int>(data.contains(kScaleName)) + static_cast<int>(data.contains(kGrowthTrackerName)) +
                      static_cast<int>(data.contains(kSkippedStepsName));
  if (present == 0) return;
  auto find = [&](const char* name, DType dtype) -> const Tensor& {
    if (!data.contains(name))
      throw Error(where + "missing \"" + name + "\" (the other loss scaler state is there: a damaged checkpoint?)");
    const Tensor& t = data.at(name);
    if (t.dtype() != dtype || !t.shape().empty())
      throw Error(where + "\"" + name + "\" is " + dtype_name(t.dtype()) + " " + shape_str(t.shape()) + ", expected " +
                  dtype_name(dtype) + " ()");
    return t;
  };
  const float scale = find(kScaleName, DType::F32).item();
  const int32_t growth_tracker = find(kGrowthTrackerName, DType::I32).to_int_vector()[0];
  const int32_t skipped = find(kSkippedStepsName, DType::I32).to_int_vector()[0];
  if (!(scale > 0.0f) || !std::isfinite(scale))
    throw Error(where + "\"" + kScaleName + "\" is " + std::to_string(scale) + ", expected finite and > 0");
  if (growth_tracker < 0)
    throw Error(where + "\"" + kGrowthTrackerName + "\" is negative (" + std::to_string(growth_tracker) + ")");
  if (skipped < 0) throw Error(where + "\"" + kSkippedStepsName + "\" is negative (" + std::to_string(skipped) + ")");
  scale_ = scale;
  growth_tracker_ = growth_tracker;
  skipped_steps_ = skipped;
}

}  // namespace tg
