// LayerNorm over the last dimension: (x - mean) / sqrt(var + eps) * weight + bias.
#pragma once
#include <cstdint>

#include "autograd/functions/layernorm.h"
#include "nn/module.h"

namespace tg {

class LayerNorm : public Module {
 public:
  // weight ones, bias zeros (no bias when bias = false, as nanoGPT's `bias` option allows).
  explicit LayerNorm(int64_t C, float eps = 1e-5f, bool bias = true) : eps(eps) {
    TG_CHECK(C > 0, "LayerNorm: the normalized size must be positive, found " + std::to_string(C));
    weight = register_parameter("weight", Tensor::ones({C}));
    if (bias) this->bias = register_parameter("bias", Tensor::zeros({C}));
  }

  Tensor forward(const Tensor& x) const { return layernorm(x, weight, bias, eps); }  // x (..., C) -> (..., C)

  Tensor weight;  // (C)
  Tensor bias;    // (C), undefined when built with bias = false
  float eps;
};

}  // namespace tg
