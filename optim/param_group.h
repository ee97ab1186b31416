// A parameter group: tensors that share optimizer settings. The usual split is weight matrices
// with weight decay and biases / norm gains / embeddings without; the caller decides.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace tg {

struct ParamGroup {
  std::vector<Tensor> params;
  float weight_decay = 0.0f;
};

// nanoGPT's AdamW grouping, for any model: every parameter with two or more dimensions (weight
// matrices and embeddings; a GPT's wte doubles as its lm_head) decays with `weight_decay`; the
// one-dimensional ones (biases, LayerNorm gains and shifts) do not, because shrinking a bias or a
// norm's gain toward zero is not a useful prior. Returns {decay, no decay}, in parameter order.
std::vector<ParamGroup> weight_decay_groups(const std::vector<Tensor>& params, float weight_decay);

// Throws tg::Error naming `optimizer`, the group and the index when a parameter is undefined,
// has a dtype the optimizer cannot update (f32 always; bf16 and f16 with `allow_half`, for an
// optimizer that keeps f32 master weights; never i32 or u8), is listed twice (it would be updated
// twice per step), or when a group's weight decay is negative or not finite.
void check_param_groups(const char* optimizer, const std::vector<ParamGroup>& groups, bool allow_half);

// Throws tg::Error naming `optimizer` and `what` unless value is finite and >= 0.
void check_non_negative(const char* optimizer, const char* what, float value);

}  // namespace tg
