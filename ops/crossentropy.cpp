#include "ops/crossentropy.h"

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/crossentropy.h"
#ifdef TG_CUDA
#include "ops/cuda/crossentropy.h"
#endif

namespace tg::ops {

static const char* kOp = "cross_entropy";

// logits (N, V) or (B, T, V), a float dtype (f32 on the CPU), contiguous; targets i32 contiguous of
// logits' shape without V.
static void check_logits_and_targets(const Tensor& logits, const Tensor& targets) {
  check_float_or_half_dtype(kOp, logits, "logits");
  if (logits.dim() != 2 && logits.dim() != 3)
    throw Error(std::string(kOp) + ": logits has shape " + shape_str(logits.shape()) + ", expected (N, V) or (B, T, V)");
  check_contiguous(kOp, logits, "logits");
  check_dtype(kOp, targets, "targets", DType::I32);
  Shape rows(logits.shape().begin(), logits.shape().end() - 1);
  std::string why = "one class index per row of logits " + shape_str(logits.shape());
  check_shape(kOp, targets, "targets", rows, why.c_str());
  check_contiguous(kOp, targets, "targets");
}

// A target outside [0, V) would read and write outside its row of logits. Checked on the host for
// both devices (CUDA targets are copied over: N ints, after the queued work).
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

// e must be in [0, 1] (as PyTorch).
static void check_label_smoothing(float label_smoothing) {
  if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
    throw Error(std::string(kOp) + ": label_smoothing is " + std::to_string(label_smoothing) +
                ", expected a value in [0, 1]");
}

// The checks every backward shares: logits, targets, dloss, lse, one device, targets in range.
static Device check_backward(const Tensor& dloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                             int32_t ignore_index, std::initializer_list<const Tensor*> more) {
  check_logits_and_targets(logits, targets);
  check_f32_contiguous(dloss, "dloss", {}, "the gradient of a scalar loss");
  check_f32_contiguous(lse, "lse", targets.shape(), "one per row of logits");
  Device device = check_same_device(kOp, {&dloss, &logits, &targets, &lse});
  for (const Tensor* t : more)
    if (t->device() != device)
      throw Error(std::string(kOp) + ": tensors on different devices (" + device.str() + " and " + t->device().str() + ")");
  check_targets_in_range(targets, logits.size(-1), ignore_index);
  return device;
}

void crossentropy_forward(Tensor& loss, Tensor& lse, const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                          float label_smoothing) {
  check_logits_and_targets(logits, targets);
  check_f32_contiguous(loss, "loss", {}, "a scalar");
  check_f32_contiguous(lse, "lse", targets.shape(), "one per row of logits");
  Device device = check_same_device(kOp, {&loss, &lse, &logits, &targets});
  check_label_smoothing(label_smoothing);
  const int64_t V = logits.size(-1), N = targets.numel();
  check_targets_in_range(targets, V, ignore_index);
  // Per logit: max, exp and sum (3 FLOPs); the backward's softmax minus the target, 4.
  ProfiledOp profiled("cross_entropy", [&](OpCost& c) {
    c.reads("logits", logits).reads("targets", targets).writes("lse", lse).writes("loss", loss);
    c.flops = 3.0 * static_cast<double>(logits.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::crossentropy_forward(staged.out(loss), staged.out(lse), staged.in(logits), targets.data<int32_t>(), N,
                                V, ignore_index, label_smoothing);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      // Each row's loss, summed in row order by a second kernel: a deterministic mean.
      Tensor row_loss = Tensor::empty({N}, DType::F32, device);
      cuda::crossentropy_forward(logits.dtype(), loss.data<float>(), lse.data<float>(), row_loss.data<float>(),
                                 logits.data_raw(), targets.data<int32_t>(), N, V, ignore_index, label_smoothing);
      break;
    }
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

void crossentropy_backward(Tensor& dlogits, const Tensor& dloss, const Tensor& logits, const Tensor& targets,
                           const Tensor& lse, int32_t ignore_index, float label_smoothing) {
  check_logits_and_targets(logits, targets);
  check_shape(kOp, dlogits, "dlogits", logits.shape(), "the shape of logits");
  check_same_dtype(kOp, logits, "logits", dlogits, "dlogits");
  check_contiguous(kOp, dlogits, "dlogits");
  Device device = check_backward(dloss, logits, targets, lse, ignore_index, {&dlogits});
  check_label_smoothing(label_smoothing);
  const int64_t V = logits.size(-1), N = targets.numel();
  ProfiledOp profiled("cross_entropy_backward", [&](OpCost& c) {
    c.reads("logits", logits).reads("targets", targets).reads("lse", lse).updates("dlogits", dlogits);
    c.flops = 4.0 * static_cast<double>(logits.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::crossentropy_backward(staged.inout(dlogits), staged.in(dloss), staged.in(logits),
                                 targets.data<int32_t>(), staged.in(lse), N, V, ignore_index, label_smoothing);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      Tensor scale = Tensor::empty({1}, DType::F32, device);  // dloss / count, formed on the device
      cuda::crossentropy_backward(logits.dtype(), dlogits.data_raw(), dloss.data<float>(), logits.data_raw(),
                                  targets.data<int32_t>(), lse.data<float>(), scale.data<float>(), N, V, ignore_index,
                                  /*accumulate=*/true, label_smoothing);
      break;
    }
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

void crossentropy_backward_inplace(Tensor& logits, const Tensor& dloss, const Tensor& targets, const Tensor& lse,
                                   int32_t ignore_index, float label_smoothing) {
  Device device = check_backward(dloss, logits, targets, lse, ignore_index, {});
  check_label_smoothing(label_smoothing);
  const int64_t V = logits.size(-1), N = targets.numel();
  ProfiledOp profiled("cross_entropy_backward", [&](OpCost& c) {
    c.reads("targets", targets).reads("lse", lse).updates("logits", logits);
    c.flops = 4.0 * static_cast<double>(logits.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      // The CPU kernel accumulates: run it into f32 zeros, then copy (rounding, for half logits) over
      // the logits it has finished reading.
      F32Staging staged;
      Tensor dlogits = Tensor::zeros(logits.shape(), DType::F32, device);
      cpu::crossentropy_backward(staged.inout(dlogits), staged.in(dloss), staged.in(logits),
                                 targets.data<int32_t>(), staged.in(lse), N, V, ignore_index, label_smoothing);
      logits.copy_(dlogits);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      Tensor scale = Tensor::empty({1}, DType::F32, device);
      cuda::crossentropy_backward(logits.dtype(), logits.data_raw(), dloss.data<float>(), logits.data_raw(),
                                  targets.data<int32_t>(), lse.data<float>(), scale.data<float>(), N, V, ignore_index,
                                  /*accumulate=*/false, label_smoothing);
      break;
    }
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

}  // namespace tg::ops
