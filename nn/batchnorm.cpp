#include "nn/batchnorm.h"

#include <string>

#include "autograd/functions/batchnorm.h"

namespace tg {

BatchNorm2d::BatchNorm2d(int64_t C, float eps, float momentum, bool affine) : eps(eps), momentum(momentum) {
  TG_CHECK(C > 0, "BatchNorm2d: the number of channels must be positive, found " + std::to_string(C));
  TG_CHECK(eps >= 0.0f, "BatchNorm2d: eps must be >= 0, found " + std::to_string(eps));
  TG_CHECK(momentum >= 0.0f && momentum <= 1.0f, "BatchNorm2d: momentum must be in [0, 1], found " + std::to_string(momentum));
  if (affine) {
    weight = register_parameter("weight", Tensor::ones({C}));
    bias = register_parameter("bias", Tensor::zeros({C}));
  }
  running_mean = register_buffer("running_mean", Tensor::zeros({C}), /*keep_f32=*/true);
  running_var = register_buffer("running_var", Tensor::ones({C}), /*keep_f32=*/true);
  num_batches_tracked = register_buffer("num_batches_tracked", Tensor::zeros({}, DType::I32));
}

Tensor BatchNorm2d::run(const Tensor& x, bool relu) {
  Tensor y = is_training() && synced_norm
                 ? synced_norm(*this, x, relu)
                 : batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum, eps, relu);
  if (is_training()) {
    // A host round trip of one int (the buffer may live on a GPU); PyTorch counts the same way.
    const int32_t count = num_batches_tracked.to_int_vector()[0];
    num_batches_tracked.copy_(Tensor::from_ints({count + 1}, {}).to(num_batches_tracked.device()));
  }
  return y;
}

Tensor BatchNorm2d::forward(const Tensor& x) { return run(x, false); }
Tensor BatchNorm2d::forward_relu(const Tensor& x) { return run(x, true); }

}  // namespace tg
