// Optimizer kernels: elementwise updates over one parameter tensor, and the reductions that
// gradient clipping and loss scaling need. In place. Unlike the other CPU kernels these also take
// bf16 / f16 parameters and gradients (as uint16_t bits, read as f32), because a half-precision
// model's optimizer keeps f32 master weights and runs on any device.
//
// Work is split into fixed blocks of kBlock elements, each done by one thread with a SIMD inner
// loop. Because the blocks do not depend on the thread count, every element takes the same
// instruction path (vector body or tail) on any machine setting, so a run is bit-reproducible
// whatever OMP_NUM_THREADS is; resume-equals-uninterrupted tests rely on that.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"
#include "tensor/dtype.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// param, grad, m, v (n). PyTorch AdamW: decoupled weight decay, bias-corrected moments;
// `step` is this parameter's update count including this one (>= 1).
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step);

// param, grad (n) of `dtype` (bf16 or f16, as bits); master, m, v (n) f32. The master goes
// through exactly adamw_update's f32 arithmetic on the gradient read as f32, then param gets the
// master rounded to nearest, or stochastically with optim_math::rounding_bits(rounding_key, i) for
// element i when `stochastic`.
void adamw_update_half(DType dtype, uint16_t* param, const uint16_t* grad, float* master, float* m, float* v,
                       int64_t n, float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                       bool stochastic, uint64_t rounding_key);

// param, grad, low (n) 16-bit: a bf16 param whose f32 master is optim_math::join_master(param,
// low). The master goes through adamw_update's f32 arithmetic as in adamw_update_half, and is
// stored back as param = optim_math::master_bf16 (nearest, ties toward zero) and its low bits.
void adamw_update_bf16_split(uint16_t* param, const uint16_t* grad, uint16_t* low, float* m, float* v, int64_t n,
                             float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step);

// param, grad, momentum_buf (n; null when momentum == 0). PyTorch SGD: weight decay added to the
// gradient, the buffer set to that gradient on the first step.
void sgd_update(float* param, const float* grad, float* momentum_buf, int64_t n, float lr, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step);

// x (n) -> sum of x^2, accumulated in double in a fixed order (deterministic).
double sum_of_squares(const float* x, int64_t n);
// x (n) bf16 or f16 bits, read as f32 -> the same sum.
double sum_of_squares_half(DType dtype, const uint16_t* x, int64_t n);

// x (n) *= s. With `check`, returns true when some result is inf or NaN (the loss scaler's
// overflow test, on the values as stored); without, returns false.
bool scale(float* x, int64_t n, float s, bool check = false);
// x (n) bf16 or f16 bits *= s, in f32 and rounded to nearest once.
bool scale_half(DType dtype, uint16_t* x, int64_t n, float s, bool check = false);

TG_CPU_ISA_END
}  // namespace tg::cpu
