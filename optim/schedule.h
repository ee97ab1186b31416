// Learning-rate schedules.
#pragma once
#include <cstdint>

namespace tg {

// Linear warmup, then cosine decay, then a floor (as llm.c and nanoGPT train GPT-2):
//   step <  warmup_steps:              max_lr * (step + 1) / warmup_steps
//   warmup_steps <= step < max_steps:  min_lr + 0.5 * (1 + cos(pi * r)) * (max_lr - min_lr),
//                                      r = (step - warmup_steps) / (max_steps - warmup_steps)
//   step >= max_steps:                 min_lr
// So step 0 gets max_lr / warmup_steps, the last warmup step and the first decay step both get
// max_lr, and the curve reaches min_lr at max_steps. warmup_steps = 0 means no warmup. Computed in
// double, returned as float. Throws tg::Error for negative steps or learning rates.
float cosine_lr(int64_t step, int64_t warmup_steps, int64_t max_steps, float max_lr, float min_lr);

}  // namespace tg
