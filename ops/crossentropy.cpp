#include "ops/crossentropy.h"

#include "ops/check.h"
#include "ops/cpu/crossentropy.h"

namespace tg::ops {

static const char* kOp = "cross_entropy";

// logits (N, V) or (B, T, V) f32 contiguous; targets i32 contiguous of logits' shape without V.
static void check_logits_and_targets(const Tensor& logits, const Tensor& targets) {
  check_dtype(kOp, logits, "logits", DType::F32);
  if (logits.dim() != 2 && logits.dim() != 3)
    throw Error(std::string(kOp) + ": logits has shape " + shape_str(logits.shape()) + ", expected (N, V) or (B, T, V)");
  check_contiguous(kOp, logits, "logits");
  check_dtype(kOp, targets, "targets", DType::I32);
  Shape rows(logits.shape().begin(), logits.shape().end() - 1);
  std::string why = "one class index per row of logits " + shape_str(logits.shape());
  check_shape(kOp, targets, "targets", rows, why.c_str());
  check_contiguous(kOp, targets, "targets");
}

// A target outside [0, V) would read and write outside its row of logits.
static void check_targets_in_range(const Tensor& targets, int64_t V, int32_t ignore_index) {
  Tensor host = targets.device().is_cpu() ? targets : targets.to(Device::cpu());
  const int32_t* values = host.data<int32_t>();
  for (int64_t i = 0; i < host.numel(); i++)
    if (values[i] != ignore_index && (values[i] < 0 || values[i] >= V))
      throw Error(std::string(kOp) + ": targets" + position_str(i, targets.shape()) + " = " + std::to_string(values[i]) +
                  " is not a class index in [0, " + std::to_string(V) + ") (V = " + std::to_string(V) +
                  ") nor ignore_index (" + std::to_string(ignore_index) + ")");
}

static void check_f32_contiguous(const Tensor& t, const char* name, const Shape& shape, const char* why) {
  check_shape(kOp, t, name, shape, why);
  check_dtype(kOp, t, name, DType::F32);
  check_contiguous(kOp, t, name);
}

void crossentropy_forward(Tensor& loss, Tensor& lse, const Tensor& logits, const Tensor& targets, int32_t ignore_index) {
  check_logits_and_targets(logits, targets);
  check_f32_contiguous(loss, "loss", {}, "a scalar");
  check_f32_contiguous(lse, "lse", targets.shape(), "one per row of logits");
  Device device = check_same_device(kOp, {&loss, &lse, &logits, &targets});
  const int64_t V = logits.size(-1), N = targets.numel();
  check_targets_in_range(targets, V, ignore_index);
  switch (device.type) {
    case DeviceType::CPU:
      cpu::crossentropy_forward(loss.data<float>(), lse.data<float>(), logits.data<float>(), targets.data<int32_t>(), N,
                                V, ignore_index);
      break;
    default: throw_unsupported_device(kOp, device);
  }
}

void crossentropy_backward(Tensor& dlogits, const Tensor& dloss, const Tensor& logits, const Tensor& targets,
                           const Tensor& lse, int32_t ignore_index) {
  check_logits_and_targets(logits, targets);
  check_f32_contiguous(dlogits, "dlogits", logits.shape(), "the shape of logits");
  check_f32_contiguous(dloss, "dloss", {}, "the gradient of a scalar loss");
  check_f32_contiguous(lse, "lse", targets.shape(), "one per row of logits");
  Device device = check_same_device(kOp, {&dlogits, &dloss, &logits, &targets, &lse});
  const int64_t V = logits.size(-1), N = targets.numel();
  check_targets_in_range(targets, V, ignore_index);
  switch (device.type) {
    case DeviceType::CPU:
      cpu::crossentropy_backward(dlogits.data<float>(), dloss.data<float>(), logits.data<float>(),
                                 targets.data<int32_t>(), lse.data<float>(), N, V, ignore_index);
      break;
    default: throw_unsupported_device(kOp, device);
  }
}

}  // namespace tg::ops
