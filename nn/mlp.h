// The transformer's feed-forward block: c_fc (C -> 4C), GELU, c_proj (4C -> C), dropout.
#pragma once
#include <cstdint>
#include <memory>

#include "autograd/functions/elementwise.h"
#include "autograd/functions/matmul.h"
#include "nn/dropout.h"
#include "nn/feedforward.h"
#include "nn/linear.h"

namespace tg {

class MLP : public FeedForward {
 public:
  // Linear layers get PyTorch's default init from `gen`; GPT re-initialises them (nn/gpt.h).
  MLP(int64_t n_embd, float dropout_p = 0.0f, bool bias = true, Generator* gen = nullptr) {
    c_fc = register_module("c_fc", std::make_shared<Linear>(n_embd, 4 * n_embd, bias, gen));
    c_proj = register_module("c_proj", std::make_shared<Linear>(4 * n_embd, n_embd, bias, gen));
    dropout = register_module("dropout", std::make_shared<Dropout>(dropout_p));
  }

  // x (..., C) -> (..., C). c_fc and the GELU are one op (on CUDA one GEMM whose epilogue adds
  // the bias and applies the GELU).
  Tensor forward(const Tensor& x) const override { return dropout->forward(c_proj->forward(hidden(x))); }
  // residual + forward(x): the transformer block's second half. Without active dropout the
  // residual add is fused into c_proj (on CUDA, into its GEMM's epilogue).
  Tensor forward_residual(const Tensor& x, const Tensor& residual) const override {
    if (!dropout->is_identity()) return add(residual, forward(x));
    return linear_residual(hidden(x), c_proj->weight, c_proj->bias, residual);
  }
  Tensor hidden(const Tensor& x) const { return linear_gelu(x, c_fc->weight, c_fc->bias); }

  std::shared_ptr<Linear> c_fc;
  std::shared_ptr<Linear> c_proj;
  std::shared_ptr<Dropout> dropout;
};

}  // namespace tg
