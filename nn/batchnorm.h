// BatchNorm2d over NHWC feature maps: per-channel statistics over N*H*W, as torch.nn.BatchNorm2d.
#pragma once
#include <cstdint>
#include <functional>

#include "nn/module.h"

namespace tg {

class BatchNorm2d : public Module {
 public:
  // Parameters "weight" (ones) and "bias" (zeros) when affine; buffers "running_mean" (zeros),
  // "running_var" (ones), both kept f32 by to(DType), and "num_batches_tracked" (i32, shape ()).
  // PyTorch's names and defaults, so a state dict loads either way.
  explicit BatchNorm2d(int64_t C, float eps = 1e-5f, float momentum = 0.1f, bool affine = true);

  // x (N,H,W,C) -> (N,H,W,C). In training: normalise with the batch's statistics, update the running
  // ones and count the batch; in evaluation: normalise with the running statistics.
  Tensor forward(const Tensor& x);
  // max(0, forward(x)) in one pass over the data (and one backward).
  Tensor forward_relu(const Tensor& x);

  Tensor weight, bias;  // (C), undefined when affine = false
  Tensor running_mean, running_var;  // (C) f32
  Tensor num_batches_tracked;  // () i32
  float eps, momentum;
  // In training, when set, normalises instead of batch_norm (autograd/functions/batchnorm.h) with
  // the statistics of a batch split over several processes (dist::convert_sync_batchnorm sets it:
  // --sync-bn), updating the running statistics as batch_norm does. Empty: this process's batch.
  std::function<Tensor(BatchNorm2d& self, const Tensor& x, bool relu)> synced_norm;

 private:
  Tensor run(const Tensor& x, bool relu);
};

}  // namespace tg
