#include "optim/clip.h"

#include <cmath>
#include <string>

#include "autograd/engine.h"
#include "ops/optim.h"

namespace tg {

float clip_grad_norm(const std::vector<Tensor>& params, float max_norm) {
  if (!(max_norm >= 0.0f)) throw Error("clip_grad_norm: max_norm must be >= 0, got " + std::to_string(max_norm));
  NoGrad no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) grads.push_back(g);
  }
  double norm = std::sqrt(ops::sum_of_squares(grads));
  double coef = static_cast<double>(max_norm) / (norm + 1e-6);
  if (coef < 1.0 || std::isnan(coef)) ops::scale_(grads, static_cast<float>(coef));
  return static_cast<float>(norm);
}

}  // namespace tg
