#include "ops/optim.h"

#include <string>

#include "ops/check.h"
#include "ops/cpu/optim.h"

namespace tg::ops {

// The checks every optimizer state tensor shares: f32, contiguous, shaped like the parameter.
static void check_like_param(const char* op, const Tensor& t, const char* name, const Tensor& param) {
  check_shape(op, t, name, param.shape(), "the shape of param");
  check_dtype(op, t, name, DType::F32);
  check_contiguous(op, t, name);
}

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step) {
  const char* op = "adamw_update";
  check_defined(op, param, "param");
  check_dtype(op, param, "param", DType::F32);
  check_contiguous(op, param, "param");
  check_like_param(op, grad, "grad", param);
  check_like_param(op, m, "m", param);
  check_like_param(op, v, "v", param);
  if (step < 1) throw Error(std::string(op) + ": step is " + std::to_string(step) + ", expected >= 1 (it counts this update)");
  Device device = check_same_device(op, {&param, &grad, &m, &v});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::adamw_update(param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), param.numel(), lr,
                        beta1, beta2, eps, weight_decay, step);
      break;
    default: throw_unsupported_device(op, device);
  }
}

void sgd_update(Tensor& param, const Tensor& grad, Tensor& momentum_buf, float lr, float momentum, float dampening,
                float weight_decay, bool nesterov, bool first_step) {
  const char* op = "sgd_update";
  check_defined(op, param, "param");
  check_dtype(op, param, "param", DType::F32);
  check_contiguous(op, param, "param");
  check_like_param(op, grad, "grad", param);
  if (momentum != 0.0f) check_like_param(op, momentum_buf, "momentum_buf", param);
  Device device = check_same_device(op, {&param, &grad, &momentum_buf});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::sgd_update(param.data<float>(), grad.data<float>(), momentum != 0.0f ? momentum_buf.data<float>() : nullptr,
                      param.numel(), lr, momentum, dampening, weight_decay, nesterov, first_step);
      break;
    default: throw_unsupported_device(op, device);
  }
}

double sum_of_squares(const Tensor& t) {
  const char* op = "sum_of_squares";
  check_dtype(op, t, "t", DType::F32);
  check_contiguous(op, t, "t");
  switch (t.device().type) {
    case DeviceType::CPU: return cpu::sum_of_squares(t.data<float>(), t.numel());
    default: throw_unsupported_device(op, t.device());
  }
}

void scale_(Tensor& t, float s) {
  const char* op = "scale_";
  check_dtype(op, t, "t", DType::F32);
  check_contiguous(op, t, "t");
  switch (t.device().type) {
    case DeviceType::CPU: cpu::scale(t.data<float>(), t.numel(), s); break;
    default: throw_unsupported_device(op, t.device());
  }
}

}  // namespace tg::ops
