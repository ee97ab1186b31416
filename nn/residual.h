// BasicBlock: the residual block of ResNet-18/34, with torchvision's parameter names.
//
//   x -> conv1 (3x3, stride) -> bn1 -> relu -> conv2 (3x3) -> bn2 -> + shortcut(x) -> relu
//
// The shortcut is x itself, or `downsample` (a 1x1 convolution with the block's stride and a
// BatchNorm, "downsample.0" / "downsample.1") when the stride or the channel count changes.
#pragma once
#include <cstdint>
#include <memory>

#include "autograd/functions/activation.h"
#include "autograd/functions/elementwise.h"
#include "nn/batchnorm.h"
#include "nn/conv2d.h"
#include "nn/module.h"
#include "nn/sequential.h"

namespace tg {

class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in_channels, int64_t out_channels, int64_t stride = 1, Generator* gen = nullptr) {
    Conv2dParams first;
    first.stride_h = first.stride_w = stride;
    first.pad_h = first.pad_w = 1;
    Conv2dParams second;
    second.pad_h = second.pad_w = 1;
    conv1 = register_module("conv1", std::make_shared<Conv2d>(in_channels, out_channels, 3, 3, first, false, gen));
    bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(out_channels));
    conv2 = register_module("conv2", std::make_shared<Conv2d>(out_channels, out_channels, 3, 3, second, false, gen));
    bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(out_channels));
    if (stride != 1 || in_channels != out_channels) {
      Conv2dParams projection;
      projection.stride_h = projection.stride_w = stride;
      downsample = register_module("downsample", std::make_shared<Sequential>());
      downsample->add(std::make_shared<Conv2d>(in_channels, out_channels, 1, 1, projection, false, gen));
      downsample->add(std::make_shared<BatchNorm2d>(out_channels));
    }
  }

  // x (N,H,W,in_channels) -> (N,H/stride,W/stride,out_channels)
  Tensor forward(const Tensor& x) const {
    Tensor h = bn2->forward(conv2->forward(bn1->forward_relu(conv1->forward(x))));
    return relu(add(h, downsample ? downsample->forward(x) : x));
  }

  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Sequential> downsample;  // null for the identity shortcut
};

}  // namespace tg
