// Errors say what is true: an op without a kernel for a device says so ("conv2d has no CUDA kernel
// yet"), and "built without CUDA" appears only in a build that has no CUDA.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "autograd/functions/batchnorm.h"
#include "autograd/functions/conv2d.h"
#include "autograd/functions/crossentropy.h"
#include "autograd/functions/pool.h"
#include "cuda_test_util.h"
#include "ops/check.h"
#include "tensor/tensor.h"

using namespace tg;

namespace {

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// The default branch of every front: what a new op without a CUDA kernel reports. Runs in every
// build, GPU or not, and expects the message that is true of the build running it.
TEST(Errors, FrontDefaultSaysWhatTheBuildLacks) {
  const std::string said = message_of([] { ops::throw_unsupported_device("softplus", Device::cuda(0)); });
#ifdef TG_CUDA
  EXPECT_EQ(said, "softplus has no CUDA kernel yet");
#else
  EXPECT_NE(said.find("softplus"), std::string::npos) << said;
  EXPECT_NE(said.find(no_cuda_message()), std::string::npos) << said;
#endif
  EXPECT_EQ(message_of([] { ops::throw_unsupported_device("softplus", Device::cpu()); }), "softplus has no CPU kernel");
  EXPECT_EQ(message_of([] { ops::throw_no_cuda_kernel("conv2d"); }), "conv2d has no CUDA kernel yet");
}

// The ops that have a CPU kernel and no CUDA one, called on the GPU through their autograd
// functions, each name themselves and say exactly that.
TEST(Errors, OpsWithoutACudaKernelSayItOnTheGpu) {
  TG_REQUIRE_GPU();
  Device gpu = test::gpu();
  Tensor image = Tensor::zeros({1, 4, 4, 2}, DType::F32, gpu);  // NHWC
  Tensor channels = Tensor::ones({2}, DType::F32, gpu);
  Tensor zeros = Tensor::zeros({2}, DType::F32, gpu);
  Tensor weight = Tensor::zeros({3, 2, 3, 3}, DType::F32, gpu);
  Pool2dParams pool;
  pool.kernel_h = pool.kernel_w = pool.stride_h = pool.stride_w = 2;
  EXPECT_EQ(message_of([&] { conv2d(image, weight, Tensor()); }), "conv2d has no CUDA kernel yet");
  EXPECT_EQ(message_of([&] { batch_norm(image, channels, zeros, Tensor(), Tensor(), true); }),
            "batch_norm has no CUDA kernel yet");
  EXPECT_EQ(message_of([&] { max_pool2d(image, pool); }), "max_pool2d has no CUDA kernel yet");
  EXPECT_EQ(message_of([&] { avg_pool2d(image, pool); }), "avg_pool2d has no CUDA kernel yet");
  EXPECT_EQ(message_of([&] { adaptive_avg_pool2d(image, 1, 1); }), "adaptive_avg_pool2d has no CUDA kernel yet");
  Tensor logits = Tensor::zeros({2, 5}, DType::F32, gpu);
  Tensor targets = Tensor::from_ints({1, 3}, {2}).to(gpu);
  EXPECT_EQ(message_of([&] { cross_entropy(logits, targets, -1, 0.1f); }),
            "cross-entropy with label smoothing has no CUDA kernel yet");
}
