// The transformer's feed-forward block: c_fc (C -> 4C), GELU, c_proj (4C -> C), dropout.
#pragma once
#include <cstdint>
#include <memory>

#include "nn/dropout.h"
#include "nn/gelu.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace tg {

class MLP : public Module {
 public:
  // Linear layers get PyTorch's default init from `gen`; GPT re-initialises them (nn/gpt.h).
  MLP(int64_t n_embd, float dropout_p = 0.0f, bool bias = true, Generator* gen = nullptr) {
    c_fc = register_module("c_fc", std::make_shared<Linear>(n_embd, 4 * n_embd, bias, gen));
    act = register_module("gelu", std::make_shared<GELU>());
    c_proj = register_module("c_proj", std::make_shared<Linear>(4 * n_embd, n_embd, bias, gen));
    dropout = register_module("dropout", std::make_shared<Dropout>(dropout_p));
  }

  // x (..., C) -> (..., C)
  Tensor forward(const Tensor& x) const { return dropout->forward(c_proj->forward(act->forward(c_fc->forward(x)))); }

  std::shared_ptr<Linear> c_fc;
  std::shared_ptr<GELU> act;
  std::shared_ptr<Linear> c_proj;
  std::shared_ptr<Dropout> dropout;
};

}  // namespace tg
