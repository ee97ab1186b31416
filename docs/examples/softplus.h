// docs/examples/softplus.h — a differentiable function with its own kernels (docs/EXTENDING.md,
// part 2), in one file for the guide: in the library the two loops are kernels in
// ops/cpu/softplus.cpp behind a front in ops/softplus.cpp, and this function is
// autograd/functions/softplus.cpp.
#pragma once
#include <cmath>
#include <vector>

#include "tilegrad.h"

namespace example {

// softplus(x) = log(1 + e^x), element-wise; its derivative is sigmoid(x).
inline tg::Tensor softplus(const tg::Tensor& x) {
  // Kernels read a contiguous copy; `record` gets the original x, which links the graph.
  tg::Tensor xc = x.contiguous(), y = tg::Tensor::empty_like(xc);
  const float* in = xc.data<float>();
  float* out = y.data<float>();
  for (int64_t i = 0; i < xc.numel(); i++) out[i] = std::log1p(std::exp(in[i]));

  return tg::record("softplus", {x}, y, [xc](const tg::Tensor& dy, std::vector<tg::Tensor>& grad) {
    if (!grad[0].defined()) return;  // x needs no gradient
    const float* in = xc.data<float>();
    const float* d = dy.data<float>();
    float* dx = grad[0].data<float>();
    // Add into the buffer (+=): a tensor used twice gets both contributions.
    for (int64_t i = 0; i < xc.numel(); i++) dx[i] += d[i] / (1.0f + std::exp(-in[i]));
  });
}

}  // namespace example
