// docs/examples/gated_mlp.h — a layer composed from existing ops (docs/EXTENDING.md, part 1).
#pragma once
#include <memory>

#include "tilegrad.h"

namespace example {

// x (..., C) -> (silu(x W1) * (x W3)) W2: LLaMA's gated feed-forward, from three Linears and two
// differentiable ops. Autograd follows through all of them; nothing else is needed.
struct GatedMLP : tg::Module {
  std::shared_ptr<tg::Linear> w1, w2, w3;

  GatedMLP(int64_t dim, int64_t hidden, tg::Generator* gen = nullptr) {
    w1 = register_module("w1", std::make_shared<tg::Linear>(dim, hidden, /*bias=*/false, gen));
    w3 = register_module("w3", std::make_shared<tg::Linear>(dim, hidden, /*bias=*/false, gen));
    w2 = register_module("w2", std::make_shared<tg::Linear>(hidden, dim, /*bias=*/false, gen));
  }

  tg::Tensor forward(const tg::Tensor& x) const { return w2->forward(tg::silu(w1->forward(x)) * w3->forward(x)); }
};

}  // namespace example
