// A small model for the DataParallel tests: `depth` tanh layers of `width` units and a buffer,
// with a scalar loss; each layer's parameters form their own buckets at a small bucket size, so
// the tests can watch buckets complete one after another during backward.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "autograd/functions/activation.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/reduce.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace tg::test {

struct TanhStack : Module {
  std::vector<std::shared_ptr<Linear>> layers;
  Tensor steps_seen;  // a buffer, to check that DataParallel broadcasts buffers too

  TanhStack(int depth, int64_t width, uint64_t seed) {
    Generator gen(seed);
    for (int i = 0; i < depth; i++)
      layers.push_back(register_module("layer" + std::to_string(i), std::make_shared<Linear>(width, width, true, &gen)));
    steps_seen = register_buffer("steps_seen", Tensor::full({2}, static_cast<float>(seed)));
  }

  // mean(tanh(...tanh(x W0^T + b0)...)^2): x (B, width) -> a scalar
  Tensor loss(const Tensor& x) const {
    Tensor h = x;
    for (const auto& layer : layers) h = tg::tanh(layer->forward(h));
    return tg::mean(tg::mul(h, h));
  }
};

// Rank r's micro-batch m: (4, width) normal draws from its own seed.
inline Tensor rank_batch(int rank, int micro, int64_t width) {
  Generator gen(5000 + 100 * static_cast<uint64_t>(rank) + static_cast<uint64_t>(micro));
  return Tensor::randn({4, width}, &gen);
}

}  // namespace tg::test
