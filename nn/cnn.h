// The image classifiers ./train builds, by preset name. Every one is a Sequential of NHWC layers
// whose state-dict names are those of the same network in PyTorch (nn.Sequential indices, or
// torchvision's ResNet names), so a checkpoint loads into the PyTorch model with the weights as
// they are (Conv2d weights are (out, in/groups, kh, kw) in both).
//
//   cnn-ref  exactly bench/torch/torch_cnn.py's network, the speed yardstick:
//            conv3x3(C->32) BN ReLU | conv3x3(32->64) BN ReLU | maxpool 2 |
//            conv3x3(64->128) BN ReLU | maxpool 2 | global average pool | linear(128->classes)
//   cnn      the default: two conv-BN-ReLU pairs per resolution (32, 64 channels), then 128
//            channels at a quarter of the resolution and global average pooling; chosen for
//            accuracy per minute on Fashion-MNIST (fewer FLOPs than cnn-ref, deeper)
//   resnet   a ResNet-18-style network sized for small images: a 3x3 stem, three stages of two
//            BasicBlocks (32, 64, 128 channels, stride 2 between stages), global average pooling
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/sequential.h"
#include "tensor/random.h"

namespace tg {

// The preset names, for --help and error messages.
const std::vector<std::string>& cnn_presets();

// Builds preset `name` for images with `in_channels` channels and `classes` classes, drawing its
// initial weights (PyTorch's default initialisers) from `gen`. Throws naming the preset when unknown.
std::shared_ptr<Sequential> make_cnn(const std::string& name, int64_t in_channels, int64_t classes, Generator& gen);

}  // namespace tg
