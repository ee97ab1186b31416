#include "optim/schedule.h"

#include <cmath>
#include <string>

#include "tensor/error.h"

namespace tg {

float cosine_lr(int64_t step, int64_t warmup_steps, int64_t max_steps, float max_lr, float min_lr) {
  if (step < 0 || warmup_steps < 0 || max_steps < 0)
    throw Error("cosine_lr: step (" + std::to_string(step) + "), warmup_steps (" + std::to_string(warmup_steps) +
                ") and max_steps (" + std::to_string(max_steps) + ") must be >= 0");
  if (!(max_lr >= 0.0f) || !(min_lr >= 0.0f))
    throw Error("cosine_lr: max_lr (" + std::to_string(max_lr) + ") and min_lr (" + std::to_string(min_lr) +
                ") must be >= 0");
  if (step < warmup_steps)
    return static_cast<float>(static_cast<double>(max_lr) * static_cast<double>(step + 1) / static_cast<double>(warmup_steps));
  if (step >= max_steps) return min_lr;
  const double pi = std::acos(-1.0);
  double ratio = static_cast<double>(step - warmup_steps) / static_cast<double>(max_steps - warmup_steps);
  double coeff = 0.5 * (1.0 + std::cos(pi * ratio));
  return static_cast<float>(min_lr + coeff * (static_cast<double>(max_lr) - min_lr));
}

}  // namespace tg
