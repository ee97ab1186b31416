#include "nn/linear.h"

#include <cmath>

#include "autograd/functions/matmul.h"
#include "nn/init.h"

namespace tg {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator* gen) {
  TG_CHECK(in_features > 0 && out_features > 0, "Linear: in_features and out_features must be positive, found " +
                                                    std::to_string(in_features) + " and " +
                                                    std::to_string(out_features));
  Generator& g = gen ? *gen : default_generator();
  float bound = 1.0f / std::sqrt(static_cast<float>(in_features));
  weight = register_parameter("weight", Tensor::empty({out_features, in_features}));
  init::uniform_(weight, -bound, bound, g);
  if (bias) {
    this->bias = register_parameter("bias", Tensor::empty({out_features}));
    init::uniform_(this->bias, -bound, bound, g);
  }
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

}  // namespace tg
