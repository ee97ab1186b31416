// docs/examples/sincos.h — a function with two outputs (docs/EXTENDING.md, part 3).
#pragma once
#include <cmath>
#include <vector>

#include "tilegrad.h"

namespace example {

// x -> (sin x, cos x), element-wise, as one node: one backward receives both outputs' gradients
// (zero-filled for an output that no loss reached) and adds into dx.
inline std::vector<tg::Tensor> sincos(const tg::Tensor& x) {
  tg::Tensor xc = x.contiguous();
  tg::Tensor s = tg::Tensor::empty_like(xc), c = tg::Tensor::empty_like(xc);
  for (int64_t i = 0; i < xc.numel(); i++) {
    s.data<float>()[i] = std::sin(xc.data<float>()[i]);
    c.data<float>()[i] = std::cos(xc.data<float>()[i]);
  }
  return tg::record("sincos", {x}, {s, c},
                    [s, c](const std::vector<tg::Tensor>& grad_out, std::vector<tg::Tensor>& grad) {
                      if (!grad[0].defined()) return;
                      const float* ds = grad_out[0].data<float>();
                      const float* dc = grad_out[1].data<float>();
                      float* dx = grad[0].data<float>();
                      // d(sin x) = cos x dx, d(cos x) = -sin x dx
                      for (int64_t i = 0; i < s.numel(); i++)
                        dx[i] += ds[i] * c.data<float>()[i] - dc[i] * s.data<float>()[i];
                    });
}

}  // namespace example
