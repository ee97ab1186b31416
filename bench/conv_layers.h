// The convolution layers the conv benchmarks time (bench_conv on the CPU, bench_gpu_conv on a GPU;
// bench/torch/torch_conv.py lists the same for PyTorch): the reference CNN's three convs and the
// small ResNet's (nn/cnn.cpp), NHWC, at the batch each benchmark passes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tg::bench {

struct ConvLayer {
  std::string name;
  int64_t N, H, W, C, K, R, S, stride, pad;
};

// cnn_ref_only: the reference CNN's layers alone (bench_conv --quick).
inline std::vector<ConvLayer> conv_layers(int64_t batch, bool cnn_ref_only = false) {
  const int64_t B = batch;
  std::vector<ConvLayer> out = {
      // cnn-ref: 1x28x28 input, two 3x3 convs at 28x28 then one at 14x14 (after a 2x2 pool).
      {"cnn-ref.conv1 1->32", B, 28, 28, 1, 32, 3, 3, 1, 1},
      {"cnn-ref.conv2 32->64", B, 28, 28, 32, 64, 3, 3, 1, 1},
      {"cnn-ref.conv3 64->128", B, 14, 14, 64, 128, 3, 3, 1, 1},
  };
  if (cnn_ref_only) return out;
  // resnet (nn/cnn.cpp): a 3x3 stem 1->32, then stages of 32, 64 and 128 channels at 28, 14 and 7;
  // each later stage opens with a stride-2 3x3 conv and a stride-2 1x1 shortcut.
  const std::vector<ConvLayer> resnet = {
      {"resnet.conv1 1->32", B, 28, 28, 1, 32, 3, 3, 1, 1},
      {"resnet.32 3x3 @28", B, 28, 28, 32, 32, 3, 3, 1, 1},
      {"resnet.64 3x3 s2 @28", B, 28, 28, 32, 64, 3, 3, 2, 1},
      {"resnet.64 1x1 s2 @28", B, 28, 28, 32, 64, 1, 1, 2, 0},
      {"resnet.64 3x3 @14", B, 14, 14, 64, 64, 3, 3, 1, 1},
      {"resnet.128 3x3 s2 @14", B, 14, 14, 64, 128, 3, 3, 2, 1},
      {"resnet.128 1x1 s2 @14", B, 14, 14, 64, 128, 1, 1, 2, 0},
      {"resnet.128 3x3 @7", B, 7, 7, 128, 128, 3, 3, 1, 1},
  };
  out.insert(out.end(), resnet.begin(), resnet.end());
  return out;
}

}  // namespace tg::bench
