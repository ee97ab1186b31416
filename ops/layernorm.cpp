#include "ops/layernorm.h"

#include "ops/check.h"
#include "ops/cpu/layernorm.h"

namespace tg::ops {

static const char* kOp = "layernorm";

// x must be f32, contiguous, with a non-empty last dimension C; returns C.
static int64_t check_input(const Tensor& x) {
  check_dtype(kOp, x, "x", DType::F32);
  check_contiguous(kOp, x, "x");
  if (x.dim() < 1 || x.size(-1) == 0)
    throw Error(std::string(kOp) + ": x has shape " + shape_str(x.shape()) +
                ", expected at least one dimension and a non-empty last dimension to normalise over");
  return x.size(-1);
}

// An optional (C) parameter or its gradient: undefined, or f32, contiguous, shape (C).
static void check_parameter(const Tensor& t, const char* name, const Tensor& x) {
  if (!t.defined()) return;
  std::string why = "the last dimension of x " + shape_str(x.shape());
  check_shape(kOp, t, name, {x.size(-1)}, why.c_str());
  check_dtype(kOp, t, name, DType::F32);
  check_contiguous(kOp, t, name);
}

// mean and rstd hold one float per row of x: shape x.shape[:-1].
static void check_row_statistic(const Tensor& t, const char* name, const Tensor& x) {
  Shape rows(x.shape().begin(), x.shape().end() - 1);
  std::string why = "one per row of x " + shape_str(x.shape());
  check_shape(kOp, t, name, rows, why.c_str());
  check_dtype(kOp, t, name, DType::F32);
  check_contiguous(kOp, t, name);
}

static void check_like_x(const Tensor& t, const char* name, const Tensor& x) {
  check_same_shape(kOp, t, name, x, "x");
  check_dtype(kOp, t, name, DType::F32);
  check_contiguous(kOp, t, name);
}

// Null for an undefined tensor: the kernels read that as "no weight" / "gradient not wanted".
static float* optional_data(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       float eps) {
  const int64_t C = check_input(x);
  check_parameter(weight, "weight", x);
  check_parameter(bias, "bias", x);
  check_like_x(out, "out", x);
  check_row_statistic(mean, "mean", x);
  check_row_statistic(rstd, "rstd", x);
  if (!(eps >= 0.0f)) throw Error(std::string(kOp) + ": eps is " + std::to_string(eps) + ", expected >= 0");
  Device device = check_same_device(kOp, {&out, &mean, &rstd, &x, &weight, &bias});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::layernorm_forward(out.data<float>(), mean.data<float>(), rstd.data<float>(), x.data<float>(),
                             optional_data(weight), optional_data(bias), x.numel() / C, C, eps);
      break;
    default: throw_unsupported_device(kOp, device);
  }
}

void layernorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& mean, const Tensor& rstd) {
  const int64_t C = check_input(x);
  check_like_x(dout, "dout", x);
  if (dx.defined()) check_like_x(dx, "dx", x);
  check_parameter(weight, "weight", x);
  check_parameter(dweight, "dweight", x);
  check_parameter(dbias, "dbias", x);
  check_row_statistic(mean, "mean", x);
  check_row_statistic(rstd, "rstd", x);
  Device device = check_same_device(kOp, {&dx, &dweight, &dbias, &dout, &x, &weight, &mean, &rstd});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::layernorm_backward(optional_data(dx), optional_data(dweight), optional_data(dbias),
                              dout.data<float>(), x.data<float>(), optional_data(weight), mean.data<float>(),
                              rstd.data<float>(), x.numel() / C, C);
      break;
    default: throw_unsupported_device(kOp, device);
  }
}

}  // namespace tg::ops
