#include "nn/conv2d.h"

#include <cmath>
#include <string>

#include "autograd/functions/conv2d.h"
#include "nn/init.h"

namespace tg {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_h, int64_t kernel_w, Conv2dParams params,
               bool bias, Generator* gen)
    : params(params) {
  const std::string sizes = "in_channels " + std::to_string(in_channels) + ", out_channels " +
                            std::to_string(out_channels) + ", kernel " + std::to_string(kernel_h) + "x" +
                            std::to_string(kernel_w) + ", groups " + std::to_string(params.groups);
  TG_CHECK(in_channels > 0 && out_channels > 0 && kernel_h > 0 && kernel_w > 0 && params.groups > 0,
           "Conv2d: channels, kernel size and groups must be positive, found " + sizes);
  TG_CHECK(in_channels % params.groups == 0 && out_channels % params.groups == 0,
           "Conv2d: groups must divide in_channels and out_channels, found " + sizes);
  Generator& g = gen ? *gen : default_generator();
  const int64_t fan_in = in_channels / params.groups * kernel_h * kernel_w;
  const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  weight = register_parameter("weight", Tensor::empty({out_channels, in_channels / params.groups, kernel_h, kernel_w}));
  init::uniform_(weight, -bound, bound, g);
  if (bias) {
    this->bias = register_parameter("bias", Tensor::empty({out_channels}));
    init::uniform_(this->bias, -bound, bound, g);
  }
}

Tensor Conv2d::forward(const Tensor& x) const { return conv2d(x, weight, bias, params); }

}  // namespace tg
