#include "ops/layernorm.h"

#include <vector>

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
      const int64_t N = x.numel() / C;
      F32Staging staged;  // an undefined weight or bias stays null: "no weight"
      const float* w = staged.in(weight);
      const float* b = staged.in(bias);
      if (x.dtype() == DType::F32) {
        cpu::layernorm_forward(out.data<float>(), mean.data<float>(), rstd.data<float>(), x.data<float>(), w, b, N, C, eps);
        break;
      }
      // Rows are independent: staged a few at a time (ops/f32_staging.h).
      float* m = mean.data<float>();
      float* r = rstd.data<float>();
      staged_rows({{&out, PointwiseOperand::Out}, {&x, PointwiseOperand::In}}, N, staged_row_groups(N, N * C),
                  [&](int64_t, int64_t first, int64_t rows, float* const* blocks) {
                    cpu::layernorm_forward(blocks[0], m + first, r + first, blocks[1], w, b, rows, C, eps);
                  });
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
        staged_pointwise({{&residual, PointwiseOperand::Out}, {&a, PointwiseOperand::In}, {&b, PointwiseOperand::In}},
                         a.numel(), [](float* const* chunks, int64_t n) {
                           cpu::add_forward(chunks[0], chunks[1], {1}, chunks[2], {1}, {n});
                         });
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
      const int64_t N = x.numel() / C;
      F32Staging staged;
      if (x.dtype() == DType::F32) {
        cpu::layernorm_backward(staged.inout(dx), staged.inout(dweight), staged.inout(dbias), dout.data<float>(),
                                x.data<float>(), staged.in(weight), mean.data<float>(), rstd.data<float>(), N, C);
        break;
      }
      // Rows staged a few at a time (ops/f32_staging.h), grouped as the kernel's own chunks, so the
      // per-chunk partial sums of dweight and dbias and their chunk-order total are its bits.
      std::vector<float> ones;
      const float* w = staged.in(weight);
      if (!w) {
        ones.assign(C, 1.0f);
        w = ones.data();
      }
      const bool params = dweight.defined() || dbias.defined();
      const int64_t chunks = params ? cpu::layernorm_backward_chunks(N) : staged_row_groups(N, N * C);
      std::vector<float> partial(params ? static_cast<size_t>(chunks * 2 * C) : 0, 0.0f);
      const float* m = mean.data<float>();
      const float* r = rstd.data<float>();
      auto rows_kernel = [&](int64_t chunk, int64_t first, int64_t rows, float* const* blocks) {
        float* partial_dweight = params ? partial.data() + chunk * 2 * C : nullptr;
        cpu::layernorm_backward_rows(dx.defined() ? blocks[2] : nullptr, partial_dweight,
                                     params ? partial_dweight + C : nullptr, blocks[0], blocks[1], w, m + first,
                                     r + first, rows, C);
      };
      if (dx.defined())
        staged_rows({{&dout, PointwiseOperand::In}, {&x, PointwiseOperand::In}, {&dx, PointwiseOperand::InOut}}, N,
                    chunks, rows_kernel);
      else
        staged_rows({{&dout, PointwiseOperand::In}, {&x, PointwiseOperand::In}}, N, chunks, rows_kernel);
      if (!params) break;
      cpu::layernorm_backward_add_partials(staged.inout(dweight), staged.inout(dbias), partial.data(), chunks, C);
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
