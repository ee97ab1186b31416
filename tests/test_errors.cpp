// Errors say what is true: an op without a kernel for a device says so ("conv2d has no CUDA kernel
// yet"), and "built without CUDA" appears only in a build that has no CUDA.
#include <gtest/gtest.h>

#include <functional>
#include <string>

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

