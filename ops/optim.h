// Optimizer updates and gradient passes on tensors, in place and without autograd: the kernels
// behind optim/. Parameters and gradients are f32, bf16 or f16 (on the CPU too: a half-precision
// model's optimizer keeps f32 master weights and must run wherever the model does); optimizer
// state (master weights, moments, momentum) is f32, except a bf16 master kept as the low bits
// beside its parameter (AdamWParam::master_low). Every tensor is contiguous; shapes match the
// parameter's.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace tg::ops {

// ---- AdamW ---------------------------------------------------------------------------------

// One parameter's part of a multi-tensor AdamW step.
struct AdamWParam {
  Tensor param;               // f32, bf16 or f16
  Tensor grad;                // param's dtype and shape
  // A half param's f32 master weights, in one of two forms (an f32 param is its own master):
  Tensor master;              //   f32, the param's shape; the only form for f16, and for stochastic rounding
  Tensor master_low;          //   or, for bf16 rounded to nearest: u8, 2 bytes per element, the low 16 bits
                              //   beside the param that make the master (optim_math::join_master)
  Tensor m, v;                // f32 first and second moments
  float weight_decay = 0.0f;
  int64_t step = 1;           // this parameter's update count including this one (>= 1)
  uint64_t rounding_key = 0;  // stochastic rounding stream: optim_math::rounding_key(seed, step, index)
};

struct AdamWSettings {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  // bf16/f16 params get their updated master rounded stochastically instead of to nearest.
  bool stochastic_rounding = false;
};

// One AdamW step on every entry, with PyTorch's semantics (torch.optim.AdamW), on w = the master
// (or the f32 param itself):
//   w *= 1 - lr*weight_decay
//   m = beta1*m + (1-beta1)*grad;  v = beta2*v + (1-beta2)*grad^2
//   w -= lr * (m / (1-beta1^step)) / (sqrt(v / (1-beta2^step)) + eps)
// then a half param = w rounded (to nearest, or stochastically). With master_low the master is
// read from the bf16 param and its low bits and stored back into both, the param rounded to
// nearest with ties toward zero (ops/optim_math.h says why; f32 masters round ties to even). The CPU and CUDA kernels do the
// same f32 operations in the same order (ops/optim_math.h, ops/cpu/optim.cpp), so they agree bit
// for bit. On CUDA this is one launch per parameter dtype for the whole list. All entries must be
// on one device.
void adamw_update(const std::vector<AdamWParam>& params, const AdamWSettings& settings);

// A bf16 master as master_low (ops/optim_math.h). These convert between the forms when a master is
// made, saved or restored, on host copies.
// An f32 master -> its bf16 param (master_bf16) and master_low, on `device` (a restore).
std::pair<Tensor, Tensor> split_bf16_master(const Tensor& master, Device device);
// A bf16 param and its master_low -> the f32 master, on the CPU whatever their device: a
// checkpoint's copy, which goes to the host anyway (no f32 copy of the model on the GPU).
Tensor join_bf16_master(const Tensor& param, const Tensor& master_low);
// The master_low of a bf16 param that is its own master exactly (a first update): zeros, on its
// device.
Tensor exact_bf16_master_low(const Tensor& param);

// The single-tensor f32 form of the above (no master), kept for tests and simple callers.
void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step);

// ---- SGD -----------------------------------------------------------------------------------

// One SGD step with PyTorch's semantics (torch.optim.SGD): d = grad + weight_decay*param; with
// momentum, buf = d on the first step and buf = momentum*buf + (1-dampening)*d after, then
// d = nesterov ? d + momentum*buf : buf; finally param -= lr*d. `momentum_buf` may be undefined
// when momentum is 0. f32 only (SGD keeps no master weights), on the CPU and CUDA.
void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, float lr, float momentum, float dampening,
                float weight_decay, bool nesterov, bool first_step);

// ---- gradient passes (clipping, loss scaling) ----------------------------------------------
// Each tensor is f32, bf16 or f16 (halves are read as f32 and rounded once on store). The list
// forms skip undefined tensors and need the rest on one device; on CUDA each is one multi-tensor
// launch per dtype.

// Sum of squares of all elements. CPU: accumulated in double, tensor by tensor, in a fixed order.
// CUDA: f32 partial sums per 8192-element chunk, added in double in chunk order by one final pass
// (deterministic), one host read.
double sum_of_squares(const Tensor& t);
double sum_of_squares(const std::vector<Tensor>& tensors);

// t *= s, in place.
void scale_(Tensor& t, float s);
void scale_(const std::vector<Tensor>& tensors, float s);

// t *= s for every tensor in one pass, and whether any stored result is inf or NaN (the loss
// scaler's unscale and overflow check; a non-finite input stays non-finite). On CUDA the flag
// comes back in one host read after all launches.
bool scale_and_find_non_finite_(const std::vector<Tensor>& tensors, float s);

}  // namespace tg::ops
