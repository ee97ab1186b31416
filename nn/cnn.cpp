#include "nn/cnn.h"

#include "nn/conv2d.h"
#include "nn/flatten.h"
#include "nn/linear.h"
#include "nn/pool.h"
#include "nn/residual.h"
#include "tensor/error.h"

namespace tg {

namespace {

Conv2dParams same_3x3() {
  Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  return p;
}

Pool2dParams pool_2x2() {
  Pool2dParams p;
  p.kernel_h = p.kernel_w = p.stride_h = p.stride_w = 2;
  return p;
}

// conv3x3 (no bias: BatchNorm's shift makes it redundant), BatchNorm, ReLU.
void conv_bn_relu(Sequential& net, int64_t in, int64_t out, Generator& gen) {
  net.add(std::make_shared<Conv2d>(in, out, 3, 3, same_3x3(), false, &gen));
  net.add(std::make_shared<BatchNorm2d>(out));
  net.add(std::make_shared<ReLU>());
}

void classifier_head(Sequential& net, int64_t channels, int64_t classes, Generator& gen) {
  net.add(std::make_shared<AdaptiveAvgPool2d>(1, 1));
  net.add(std::make_shared<Flatten>());
  net.add(std::make_shared<Linear>(channels, classes, true, &gen));
}

std::shared_ptr<Sequential> reference_cnn(int64_t in_channels, int64_t classes, Generator& gen) {
  auto net = std::make_shared<Sequential>();
  conv_bn_relu(*net, in_channels, 32, gen);
  conv_bn_relu(*net, 32, 64, gen);
  net->add(std::make_shared<MaxPool2d>(pool_2x2()));
  conv_bn_relu(*net, 64, 128, gen);
  net->add(std::make_shared<MaxPool2d>(pool_2x2()));
  classifier_head(*net, 128, classes, gen);
  return net;
}

std::shared_ptr<Sequential> default_cnn(int64_t in_channels, int64_t classes, Generator& gen) {
  auto net = std::make_shared<Sequential>();
  conv_bn_relu(*net, in_channels, 32, gen);
  conv_bn_relu(*net, 32, 32, gen);
  net->add(std::make_shared<MaxPool2d>(pool_2x2()));
  conv_bn_relu(*net, 32, 64, gen);
  conv_bn_relu(*net, 64, 64, gen);
  net->add(std::make_shared<MaxPool2d>(pool_2x2()));
  conv_bn_relu(*net, 64, 128, gen);
  classifier_head(*net, 128, classes, gen);
  return net;
}

std::shared_ptr<Sequential> resnet(int64_t in_channels, int64_t classes, Generator& gen) {
  auto net = std::make_shared<Sequential>();
  net->add(std::make_shared<Conv2d>(in_channels, 32, 3, 3, same_3x3(), false, &gen), "conv1");
  net->add(std::make_shared<BatchNorm2d>(32), "bn1");
  net->add(std::make_shared<ReLU>(), "relu");
  const int64_t widths[] = {32, 64, 128};
  int64_t in = 32;
  for (int stage = 0; stage < 3; stage++) {
    auto layer = std::make_shared<Sequential>();
    layer->add(std::make_shared<BasicBlock>(in, widths[stage], stage == 0 ? 1 : 2, &gen));
    layer->add(std::make_shared<BasicBlock>(widths[stage], widths[stage], 1, &gen));
    net->add(layer, "layer" + std::to_string(stage + 1));
    in = widths[stage];
  }
  net->add(std::make_shared<AdaptiveAvgPool2d>(1, 1), "avgpool");
  net->add(std::make_shared<Flatten>(), "flatten");
  net->add(std::make_shared<Linear>(in, classes, true, &gen), "fc");
  return net;
}

}  // namespace

const std::vector<std::string>& cnn_presets() {
  static const std::vector<std::string> names = {"cnn", "cnn-ref", "resnet"};
  return names;
}

std::shared_ptr<Sequential> make_cnn(const std::string& name, int64_t in_channels, int64_t classes, Generator& gen) {
  if (in_channels < 1 || classes < 2)
    throw Error("make_cnn: expected at least 1 channel and 2 classes, got " + std::to_string(in_channels) +
                " channels and " + std::to_string(classes) + " classes");
  if (name == "cnn") return default_cnn(in_channels, classes, gen);
  if (name == "cnn-ref") return reference_cnn(in_channels, classes, gen);
  if (name == "resnet") return resnet(in_channels, classes, gen);
  std::string known;
  for (const std::string& preset : cnn_presets()) known += (known.empty() ? "" : ", ") + preset;
  throw Error("unknown image model '" + name + "' (expected one of: " + known + ")");
}

}  // namespace tg
