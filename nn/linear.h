// Linear: y = x @ weight^T + bias, with weight (out_features, in_features) as in PyTorch and GPT-2.
#pragma once
#include <cstdint>

#include "nn/module.h"

namespace tg {

class Linear : public Module {
 public:
  // PyTorch's default init: weight and bias uniform in +-1/sqrt(in_features), drawn from `gen`
  // (the default generator when null), weight first.
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);

  Tensor forward(const Tensor& x) const;  // x (..., in_features) -> (..., out_features)

  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }

  Tensor weight;  // (out_features, in_features)
  Tensor bias;    // (out_features), undefined when built with bias = false
};

}  // namespace tg
