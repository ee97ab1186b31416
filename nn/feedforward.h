// The transformer block's position-wise feed-forward part, chosen by name: GPT-2's GELU MLP
// ("gelu", nn/mlp.h) or LLaMA's gated SwiGLU ("swiglu", nn/swiglu.h).
//
// A new variant is one module deriving from FeedForward and one line in the table of
// nn/feedforward.cpp; the block, the GPT and ./train's --mlp flag take it from there.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd/functions/elementwise.h"
#include "nn/module.h"
#include "tensor/random.h"

namespace tg {

class FeedForward : public Module {
 public:
  // x (..., C) -> (..., C)
  virtual Tensor forward(const Tensor& x) const = 0;
  // residual + forward(x): the block's second half. Variants override it to fuse the add into
  // their output projection.
  virtual Tensor forward_residual(const Tensor& x, const Tensor& residual) const { return add(residual, forward(x)); }
};

// The feed-forward variant `name` for width n_embd, with dropout_p on its output and biases in its
// Linear layers when `bias`; the Linear layers draw PyTorch's default init from `gen`. Throws
// tg::Error listing the known names for any other name.
std::shared_ptr<FeedForward> make_mlp(const std::string& name, int64_t n_embd, float dropout_p = 0.0f, bool bias = true,
                                      Generator* gen = nullptr);
// The names make_mlp knows, in the order --help lists them ("gelu" first: GPT-2's, the default).
const std::vector<std::string>& mlp_names();

}  // namespace tg
