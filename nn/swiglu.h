// LLaMA's gated feed-forward block (Shazeer 2020, "GLU Variants Improve Transformer"):
//
//   c_fc (C -> 2H) makes [gate | up];  hidden = silu(gate) * up  (H);  c_proj (H -> C), dropout.
//
// The gate and up projections (LLaMA's w1 and w3) are one Linear of 2H outputs, so one GEMM reads
// x once; the two halves are views of its output. silu(a) = a * sigmoid(a).
#pragma once
#include <cstdint>
#include <memory>

#include "autograd/functions/activation.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/matmul.h"
#include "autograd/functions/view.h"
#include "nn/dropout.h"
#include "nn/feedforward.h"
#include "nn/linear.h"

namespace tg {

class SwiGLU : public FeedForward {
 public:
  // LLaMA's hidden width: two thirds of the GELU MLP's 4C, so that three C x H matrices hold as
  // many weights as the MLP's two C x 4C ones, rounded up to a multiple of 64 (LLaMA's multiple_of,
  // whole vector tiles for the GEMMs): int(2/3 * 4 * 128) = 341 -> 384, and 384 -> 1024.
  static int64_t hidden_size(int64_t n_embd) {
    const int64_t hidden = 2 * 4 * n_embd / 3;
    return (hidden + 63) / 64 * 64;
  }

  // Linear layers get PyTorch's default init from `gen`; GPT re-initialises them (nn/gpt.h).
  SwiGLU(int64_t n_embd, float dropout_p = 0.0f, bool bias = true, Generator* gen = nullptr)
      : hidden_features(hidden_size(n_embd)) {
    c_fc = register_module("c_fc", std::make_shared<Linear>(n_embd, 2 * hidden_features, bias, gen));
    c_proj = register_module("c_proj", std::make_shared<Linear>(hidden_features, n_embd, bias, gen));
    dropout = register_module("dropout", std::make_shared<Dropout>(dropout_p));
  }

  // x (..., C) -> (..., C)
  Tensor forward(const Tensor& x) const override { return dropout->forward(c_proj->forward(hidden(x))); }
  // residual + forward(x), the add fused into c_proj when dropout is inactive (as MLP's).
  Tensor forward_residual(const Tensor& x, const Tensor& residual) const override {
    if (!dropout->is_identity()) return add(residual, forward(x));
    return linear_residual(hidden(x), c_proj->weight, c_proj->bias, residual);
  }
  // x (..., C) -> silu(gate) * up (..., H)
  Tensor hidden(const Tensor& x) const {
    Tensor both = c_fc->forward(x);  // (..., 2H)
    const int64_t last = both.dim() - 1;
    Tensor gate = slice(both, last, 0, hidden_features), up = slice(both, last, hidden_features, 2 * hidden_features);
    return mul(tg::silu(gate), up);
  }

  int64_t hidden_features;  // H
  std::shared_ptr<Linear> c_fc;
  std::shared_ptr<Linear> c_proj;
  std::shared_ptr<Dropout> dropout;
};

}  // namespace tg
