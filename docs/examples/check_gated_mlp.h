// docs/examples/check_gated_mlp.h — gradchecking a module (docs/EXTENDING.md, part 4).
#pragma once
#include <string>
#include <vector>

#include "docs/examples/gated_mlp.h"

namespace example {

// Every parameter of the layer (w1, w2, w3) and its input against central differences. Returns ""
// when all agree, otherwise the parameter or input, the element, and both values.
inline std::string check_gated_mlp() {
  tg::Generator gen(7);
  GatedMLP layer(/*dim=*/4, /*hidden=*/6, &gen);
  tg::Tensor x = tg::Tensor::randn({3, 4}, &gen).requires_grad_();
  auto run = [&layer](const std::vector<tg::Tensor>& in) { return layer.forward(in[0]); };
  return tg::gradcheck_module(layer, run, {x});  // or only some: {x}, {"w1.weight"}
}

}  // namespace example
