#include "ops/layernorm.h"

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/elementwise.h"
#include "ops/cpu/layernorm.h"
#ifdef TG_CUDA
#include "ops/cuda/layernorm.h"
#endif

namespace tg::ops {

static const char* kOp = "layernorm";

// x must be a contiguous float tensor (f32, bf16 or f16) with a non-empty last
// dimension C; returns C.
static int64_t check_input(const Tensor& x) {
  check_float_or_half_contiguous(kOp, x, "x");
  if (x.dim() < 1 || x.size(-1) == 0)
    throw Error(std::string(kOp) + ": x has shape " + shape_str(x.shape()) +
                ", expected at least one dimension and a non-empty last dimension to normalise over");
  return x.size(-1);
}

// An optional (C) parameter or its gradient: undefined, or shape (C), x's dtype, contiguous.
static void check_parameter(const Tensor& t, const char* name, const Tensor& x) {
  if (!t.defined()) return;
  std::string why = "the last dimension of x " + shape_str(x.shape());
  check_shape(kOp, t, name, {x.size(-1)}, why.c_str());
  check_same_dtype(kOp, x, "x", t, name);
  check_contiguous(kOp, t, name);
}

// mean and rstd hold one f32 per row of x: shape x.shape[:-1].
static void check_row_statistic(const Tensor& t, const char* name, const Tensor& x) {
  Shape rows(x.shape().begin(), x.shape().end() - 1);
  std::string why = "one per row of x " + shape_str(x.shape());
  check_shape(kOp, t, name, rows, why.c_str());
  check_dtype(kOp, t, name, DType::F32);
  check_contiguous(kOp, t, name);
}

static void check_like_x(const Tensor& t, const char* name, const Tensor& x, const char* x_name = "x") {
  check_same_shape(kOp, t, name, x, x_name);
  check_same_dtype(kOp, x, x_name, t, name);
  check_contiguous(kOp, t, name);
}

static void check_eps(float eps) {
  if (!(eps >= 0.0f)) throw Error(std::string(kOp) + ": eps is " + std::to_string(eps) + ", expected >= 0");
}

#ifdef TG_CUDA
static void* optional_raw(const Tensor& t) { return t.defined() ? t.data_raw() : nullptr; }
#endif

void layernorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       float eps) {
  const int64_t C = check_input(x);
  check_parameter(weight, "weight", x);
  check_parameter(bias, "bias", x);
  check_like_x(out, "out", x);
  check_row_statistic(mean, "mean", x);
  check_row_statistic(rstd, "rstd", x);
  check_eps(eps);
  Device device = check_same_device(kOp, {&out, &mean, &rstd, &x, &weight, &bias});
  // Per element: the mean, the centred square, normalise and the affine (8 FLOPs); backward 14.
  ProfiledOp profiled("layernorm", [&](OpCost& c) {
    c.reads("x", x).reads("weight", weight).reads("bias", bias).writes("out", out).writes("mean", mean).writes("rstd", rstd);
    c.flops = 8.0 * static_cast<double>(x.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;  // an undefined weight or bias stays null: "no weight"
      cpu::layernorm_forward(staged.out(out), mean.data<float>(), rstd.data<float>(), staged.in(x), staged.in(weight),
                             staged.in(bias), x.numel() / C, C, eps);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::layernorm_forward(x.dtype(), out.data_raw(), mean.data<float>(), rstd.data<float>(), x.data_raw(),
                              optional_raw(weight), optional_raw(bias), x.numel() / C, C, eps);
      break;
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

void add_layernorm(Tensor& residual, Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& a, const Tensor& b,
                   const Tensor& weight, const Tensor& bias, float eps) {
  const int64_t C = check_input(a);
  check_like_x(b, "b", a, "a");
  check_like_x(residual, "residual", a, "a");
  check_like_x(out, "out", a, "a");
  check_parameter(weight, "weight", a);
  check_parameter(bias, "bias", a);
  check_row_statistic(mean, "mean", a);
  check_row_statistic(rstd, "rstd", a);
  check_eps(eps);
  Device device = check_same_device(kOp, {&residual, &out, &mean, &rstd, &a, &b, &weight, &bias});
  ProfiledOp profiled("add_layernorm", [&](OpCost& c) {
    c.reads("a", a).reads("b", b).reads("weight", weight).reads("bias", bias).writes("residual", residual);
    c.writes("out", out).writes("mean", mean).writes("rstd", rstd);
    c.flops = 9.0 * static_cast<double>(a.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      if (a.dtype() != DType::F32) {
        // As on CUDA, a half residual is rounded on store and normalised as stored, so the residual,
        // mean and rstd that backward reads agree with each other.
        cpu::add_forward(staged.out(residual), staged.in(a), a.strides(), staged.in(b), b.strides(), a.shape());
        staged.finish();
        layernorm_forward(out, mean, rstd, residual, weight, bias, eps);
        break;
      }
      cpu::add_layernorm_forward(staged.out(residual), staged.out(out), mean.data<float>(), rstd.data<float>(),
                                 staged.in(a), staged.in(b), staged.in(weight), staged.in(bias), a.numel() / C, C, eps);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      cuda::layernorm_residual_forward(a.dtype(), residual.data_raw(), out.data_raw(), mean.data<float>(),
                                       rstd.data<float>(), a.data_raw(), b.data_raw(), optional_raw(weight),
                                       optional_raw(bias), a.numel() / C, C, eps);
      break;
    }
#endif
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
  ProfiledOp profiled("layernorm_backward", [&](OpCost& c) {
    c.reads("dout", dout).reads("x", x).reads("weight", weight).reads("mean", mean).reads("rstd", rstd);
    c.updates("dx", dx).updates("dweight", dweight).updates("dbias", dbias);
    c.flops = 14.0 * static_cast<double>(x.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      // Undefined gradients stay null ("not wanted"); the parameter gradients are summed in f32 and
      // rounded once.
      F32Staging staged;
      cpu::layernorm_backward(staged.inout(dx), staged.inout(dweight), staged.inout(dbias), staged.in(dout), staged.in(x),
                              staged.in(weight), mean.data<float>(), rstd.data<float>(), x.numel() / C, C);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      const int64_t N = x.numel() / C;
      // The per-block partial rows of dweight/dbias, summed in a fixed order by the second kernel.
      Tensor scratch;
      if (dweight.defined() || dbias.defined())
        scratch = Tensor::empty({cuda::layernorm_backward_scratch_floats(N, C)}, DType::F32, device);
      cuda::layernorm_backward(x.dtype(), optional_raw(dx), optional_raw(dweight), optional_raw(dbias),
                               scratch.defined() ? scratch.data<float>() : nullptr, dout.data_raw(), x.data_raw(),
                               optional_raw(weight), mean.data<float>(), rstd.data<float>(), N, C);
      break;
    }
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

}  // namespace tg::ops
