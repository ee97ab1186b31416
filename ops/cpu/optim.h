// Optimizer kernels: elementwise updates over one parameter tensor, and the reductions that
// gradient clipping needs. All f32, in place.
//
// Work is split into fixed blocks of kBlock elements, each done by one thread with a SIMD inner
// loop. Because the blocks do not depend on the thread count, every element takes the same
// instruction path (vector body or tail) on any machine setting, so a run is bit-reproducible
// whatever OMP_NUM_THREADS is; resume-equals-uninterrupted tests rely on that.
#pragma once
#include <cstdint>

namespace tg::cpu {

// param, grad, m, v (n). PyTorch AdamW: decoupled weight decay, bias-corrected moments;
// `step` is this parameter's update count including this one (>= 1).
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step);

// param, grad, momentum_buf (n; null when momentum == 0). PyTorch SGD: weight decay added to the
// gradient, the buffer set to that gradient on the first step.
void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step);

// x (n) -> sum of x^2, accumulated in double in a fixed order (deterministic).
double sum_of_squares(const float* x, int64_t n);

// x (n) *= s
void scale(float* x, int64_t n, float s);

}  // namespace tg::cpu
