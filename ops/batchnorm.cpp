#include "ops/batchnorm.h"

#include <cmath>

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/batchnorm.h"
#ifdef TG_CUDA
#include "ops/cuda/batchnorm.h"
#endif

namespace tg::ops {

static const char* kOp = "batch_norm";

// x must be a contiguous f32, bf16 or f16 tensor with at least one dimension and a non-empty last
// dimension C; returns C. Halves are staged through f32 on the CPU (ops/f32_staging.h): the
// statistics, running statistics and the backward's sums are f32 whatever x is, as on CUDA.
static int64_t check_input(const Tensor& x) {
  check_float_or_half_contiguous(kOp, x, "x");
  if (x.dim() < 1 || x.size(-1) == 0)
    throw Error(std::string(kOp) + ": x has shape " + shape_str(x.shape()) +
                ", expected at least one dimension and a non-empty last dimension of channels");
  return x.size(-1);
}

// An optional (C) tensor: undefined, or shape (C), contiguous, and x's dtype (parameters and their
// gradients) or f32 (statistics, which stay f32 whatever x is).
static void check_channel_vector(const Tensor& t, const char* name, const Tensor& x, bool f32) {
  if (!t.defined()) return;
  std::string why = "one per channel, the last dimension of x " + shape_str(x.shape());
  check_shape(kOp, t, name, {x.size(-1)}, why.c_str());
  if (f32) check_dtype(kOp, t, name, DType::F32);
  else check_same_dtype(kOp, x, "x", t, name);
  check_contiguous(kOp, t, name);
}

static float* optional_data(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
#ifdef TG_CUDA
static void* optional_raw(const Tensor& t) { return t.defined() ? t.data_raw() : nullptr; }
#endif

void batchnorm_forward(Tensor& out, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       Tensor& running_mean, Tensor& running_var, bool training, float momentum, float eps, bool relu) {
  const int64_t C = check_input(x);
  const int64_t M = x.numel() / C;
  check_channel_vector(weight, "weight", x, false);
  check_channel_vector(bias, "bias", x, false);
  check_channel_vector(running_mean, "running_mean", x, true);
  check_channel_vector(running_var, "running_var", x, true);
  check_defined(kOp, mean, "mean");
  check_defined(kOp, rstd, "rstd");
  check_channel_vector(mean, "mean", x, true);
  check_channel_vector(rstd, "rstd", x, true);
  check_same_shape(kOp, out, "out", x, "x");
  check_same_dtype(kOp, x, "x", out, "out");
  check_contiguous(kOp, out, "out");
  if (!(eps >= 0.0f) || !std::isfinite(eps))
    throw Error(std::string(kOp) + ": eps is " + std::to_string(eps) + ", expected a finite value >= 0");
  if (training) {
    if (!(momentum >= 0.0f && momentum <= 1.0f))
      throw Error(std::string(kOp) + ": momentum is " + std::to_string(momentum) + ", expected a value in [0, 1]");
    if (running_mean.defined() != running_var.defined())
      throw Error(std::string(kOp) + ": running_mean and running_var must both be defined or both undefined");
    // One value per channel has no variance, and the unbiased running variance would divide by 0.
    if (M < 2)
      throw Error(std::string(kOp) + ": x has shape " + shape_str(x.shape()) + ", " + std::to_string(M) +
                  " value per channel; training needs more than 1 to compute a batch variance");
  } else if (!running_mean.defined() || !running_var.defined()) {
    throw Error(std::string(kOp) + ": evaluation mode normalises with the running statistics, but running_mean" +
                " or running_var is undefined");
  }
  Device device = check_same_device(kOp, {&out, &mean, &rstd, &x, &weight, &bias, &running_mean, &running_var});
  // Statistics, normalise and affine: 8 FLOPs per element in training (+1 for a fused ReLU); backward 12.
  ProfiledOp profiled("batch_norm", [&](OpCost& c) {
    c.reads("x", x).reads("weight", weight).reads("bias", bias).writes("out", out);
    c.flops = (training ? 8.0 : 2.0) * static_cast<double>(x.numel()) + (relu ? static_cast<double>(x.numel()) : 0.0);
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;  // an undefined weight or bias stays null: "no affine"
      if (training)
        cpu::batchnorm_forward_train(staged.out(out), mean.data<float>(), rstd.data<float>(),
                                     optional_data(running_mean), optional_data(running_var), staged.in(x),
                                     staged.in(weight), staged.in(bias), M, C, momentum, eps, relu);
      else
        cpu::batchnorm_forward_eval(staged.out(out), mean.data<float>(), rstd.data<float>(), staged.in(x),
                                    staged.in(weight), staged.in(bias), running_mean.data<float>(),
                                    running_var.data<float>(), M, C, eps, relu);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      if (training) {
        // The per-chunk f64 partial sums, added in chunk order by the second kernel.
        Tensor scratch = Tensor::empty({cuda::batchnorm_scratch_floats(M, C)}, DType::F32, device);
        cuda::batchnorm_forward_train(x.dtype(), out.data_raw(), mean.data<float>(), rstd.data<float>(),
                                      optional_data(running_mean), optional_data(running_var), scratch.data<float>(),
                                      x.data_raw(), optional_raw(weight), optional_raw(bias), M, C, momentum, eps, relu);
      } else {
        cuda::batchnorm_forward_eval(x.dtype(), out.data_raw(), mean.data<float>(), rstd.data<float>(), x.data_raw(),
                                     optional_raw(weight), optional_raw(bias), running_mean.data<float>(),
                                     running_var.data<float>(), M, C, eps, relu);
      }
      break;
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

void batchnorm_backward(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x,
                        const Tensor& weight, const Tensor& bias, const Tensor& mean, const Tensor& rstd, bool training,
                        bool relu) {
  const int64_t C = check_input(x);
  check_same_shape(kOp, dout, "dout", x, "x");
  check_same_dtype(kOp, x, "x", dout, "dout");
  check_contiguous(kOp, dout, "dout");
  if (dx.defined()) {
    check_same_shape(kOp, dx, "dx", x, "x");
    check_same_dtype(kOp, x, "x", dx, "dx");
    check_contiguous(kOp, dx, "dx");
  }
  check_channel_vector(weight, "weight", x, false);
  check_channel_vector(bias, "bias", x, false);
  check_channel_vector(dweight, "dweight", x, false);
  check_channel_vector(dbias, "dbias", x, false);
  check_defined(kOp, mean, "mean");
  check_defined(kOp, rstd, "rstd");
  check_channel_vector(mean, "mean", x, true);
  check_channel_vector(rstd, "rstd", x, true);
  Device device = check_same_device(kOp, {&dx, &dweight, &dbias, &dout, &x, &weight, &bias, &mean, &rstd});
  ProfiledOp profiled("batch_norm_backward", [&](OpCost& c) {
    c.reads("dout", dout).reads("x", x).reads("weight", weight).updates("dx", dx).updates("dweight", dweight).updates("dbias", dbias);
    c.flops = 12.0 * static_cast<double>(x.numel());
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;  // dx, dweight and dbias += in f32, rounded once; undefined ones stay null
      cpu::batchnorm_backward(staged.inout(dx), staged.inout(dweight), staged.inout(dbias), staged.in(dout),
                              staged.in(x), staged.in(weight), staged.in(bias), mean.data<float>(), rstd.data<float>(),
                              x.numel() / C, C, training, relu);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      const int64_t M = x.numel() / C;
      Tensor scratch = Tensor::empty({cuda::batchnorm_scratch_floats(M, C)}, DType::F32, device);
      cuda::batchnorm_backward(x.dtype(), optional_raw(dx), optional_raw(dweight), optional_raw(dbias),
                               scratch.data<float>(), dout.data_raw(), x.data_raw(), optional_raw(weight),
                               optional_raw(bias), mean.data<float>(), rstd.data<float>(), M, C, training, relu);
      break;
    }
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

// x and the (C) vectors of a piece: x contiguous f32, bf16 or f16, the vectors as in the forward, all
// on the CPU.
static void check_piece(const char* piece, const Tensor& x, std::initializer_list<std::pair<const Tensor*, const char*>> vectors) {
  check_input(x);
  for (const auto& [t, name] : vectors) check_channel_vector(*t, name, x, std::string(name) == "mean" || std::string(name) == "rstd");
  if (!x.device().is_cpu()) throw_no_cuda_kernel(piece);
  for (const auto& [t, name] : vectors)
    if (t->defined() && !t->device().is_cpu())
      throw Error(std::string(piece) + ": " + name + " is on " + t->device().str() + ", expected the CPU, where x is");
}

void batchnorm_moments(const Tensor& x, std::vector<double>& mean, std::vector<double>& m2) {
  check_piece("batch_norm_moments", x, {});
  const int64_t C = x.size(-1);
  mean.assign(C, 0.0);
  m2.assign(C, 0.0);
  F32Staging staged;
  cpu::batchnorm_moments(mean.data(), m2.data(), staged.in(x), x.numel() / C, C);
}

void batchnorm_normalise(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& mean,
                         const Tensor& rstd, bool relu) {
  check_defined(kOp, mean, "mean");
  check_defined(kOp, rstd, "rstd");
  check_piece("batch_norm_normalise", x, {{&weight, "weight"}, {&bias, "bias"}, {&mean, "mean"}, {&rstd, "rstd"}});
  check_same_shape(kOp, out, "out", x, "x");
  check_same_dtype(kOp, x, "x", out, "out");
  check_contiguous(kOp, out, "out");
  const int64_t C = x.size(-1);
  F32Staging staged;
  cpu::batchnorm_normalise(staged.out(out), staged.in(x), staged.in(weight), staged.in(bias), mean.data<float>(),
                           rstd.data<float>(), x.numel() / C, C, relu);
  staged.finish();
}

void batchnorm_gradient_sums(const Tensor& dout, const Tensor& x, const Tensor& weight, const Tensor& bias,
                             const Tensor& mean, const Tensor& rstd, bool relu, std::vector<double>& sum_g,
                             std::vector<double>& sum_gx) {
  check_defined(kOp, mean, "mean");
  check_defined(kOp, rstd, "rstd");
  check_piece("batch_norm_gradient_sums", x, {{&weight, "weight"}, {&bias, "bias"}, {&mean, "mean"}, {&rstd, "rstd"}});
  check_same_shape(kOp, dout, "dout", x, "x");
  check_same_dtype(kOp, x, "x", dout, "dout");
  check_contiguous(kOp, dout, "dout");
  const int64_t C = x.size(-1);
  sum_g.assign(C, 0.0);
  sum_gx.assign(C, 0.0);
  F32Staging staged;
  cpu::batchnorm_gradient_sums(sum_g.data(), sum_gx.data(), staged.in(dout), staged.in(x), staged.in(weight),
                               staged.in(bias), mean.data<float>(), rstd.data<float>(), x.numel() / C, C, relu);
}

void batchnorm_input_gradient(Tensor& dx, const Tensor& dout, const Tensor& x, const Tensor& weight, const Tensor& bias,
                              const Tensor& mean, const Tensor& rstd, const std::vector<double>& sum_g,
                              const std::vector<double>& sum_gx, double rows, bool relu) {
  check_defined(kOp, mean, "mean");
  check_defined(kOp, rstd, "rstd");
  check_piece("batch_norm_input_gradient", x, {{&weight, "weight"}, {&bias, "bias"}, {&mean, "mean"}, {&rstd, "rstd"}});
  check_same_shape(kOp, dout, "dout", x, "x");
  check_same_shape(kOp, dx, "dx", x, "x");
  check_same_dtype(kOp, x, "x", dout, "dout");
  check_same_dtype(kOp, x, "x", dx, "dx");
  check_contiguous(kOp, dout, "dout");
  check_contiguous(kOp, dx, "dx");
  const int64_t C = x.size(-1);
  if (static_cast<int64_t>(sum_g.size()) != C || static_cast<int64_t>(sum_gx.size()) != C)
    throw Error(std::string(kOp) + ": the gradient sums hold " + std::to_string(sum_g.size()) + " and " +
                std::to_string(sum_gx.size()) + " values, expected one per channel (" + std::to_string(C) + ")");
  F32Staging staged;
  cpu::batchnorm_input_gradient(staged.inout(dx), staged.in(dout), staged.in(x), staged.in(weight), staged.in(bias),
                                mean.data<float>(), rstd.data<float>(), sum_g.data(), sum_gx.data(), rows,
                                x.numel() / C, C, relu);
  staged.finish();
}

}  // namespace tg::ops
