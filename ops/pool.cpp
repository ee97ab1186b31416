#include "ops/pool.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/pool.h"
#ifdef TG_CUDA
#include "ops/cuda/pool.h"
#endif

namespace tg::ops {

static const char* kMaxOp = "max_pool2d";
static const char* kAvgOp = "avg_pool2d";
static const char* kAdaptiveOp = "adaptive_avg_pool2d";

// x (N,H,W,C): f32, bf16 or f16 (staged through f32 on the CPU), contiguous, non-empty H and W.
static void check_feature_map(const char* op, const Tensor& x, const char* name) {
  check_float_or_half_contiguous(op, x, name);
  if (x.dim() != 4 || x.size(1) == 0 || x.size(2) == 0)
    throw Error(std::string(op) + ": " + name + " has shape " + shape_str(x.shape()) +
                ", expected (N, H, W, C) with H, W >= 1 (NHWC)");
}

static void check_positive(const char* op, const char* what, int64_t value) {
  if (value < 1) throw Error(std::string(op) + ": " + what + " is " + std::to_string(value) + ", expected >= 1");
}

// PyTorch's pooling_output_shape along one axis.
static int64_t pooled_size(const char* op, const char* axis, int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                           int64_t dilation, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;  // floor division
  // A ceil-mode window must start inside the input or its left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) out--;
  if (out < 1)
    throw Error(std::string(op) + ": the output " + axis + " is " + std::to_string(out) + " for input " + axis + " " +
                std::to_string(in) + ", kernel " + std::to_string(kernel) + ", stride " + std::to_string(stride) +
                ", padding " + std::to_string(pad) + ", dilation " + std::to_string(dilation) +
                "; the window does not fit");
  return out;
}

Shape pool2d_output_shape(const char* op, const Tensor& x, const Pool2dParams& p, bool dilated) {
  check_feature_map(op, x, "x");
  check_positive(op, "kernel_h", p.kernel_h);
  check_positive(op, "kernel_w", p.kernel_w);
  check_positive(op, "stride_h", p.stride_h);
  check_positive(op, "stride_w", p.stride_w);
  check_positive(op, "dilation_h", p.dilation_h);
  check_positive(op, "dilation_w", p.dilation_w);
  if (!dilated && (p.dilation_h != 1 || p.dilation_w != 1))
    throw Error(std::string(op) + ": dilation is (" + std::to_string(p.dilation_h) + ", " + std::to_string(p.dilation_w) +
                "), expected (1, 1) (only max pooling dilates its window)");
  // As PyTorch: a window mostly of padding would average or max over nothing.
  if (p.pad_h < 0 || p.pad_w < 0 || p.pad_h > p.kernel_h / 2 || p.pad_w > p.kernel_w / 2)
    throw Error(std::string(op) + ": padding is (" + std::to_string(p.pad_h) + ", " + std::to_string(p.pad_w) +
                "), expected between 0 and half the kernel (" + std::to_string(p.kernel_h / 2) + ", " +
                std::to_string(p.kernel_w / 2) + ")");
  const int64_t P = pooled_size(op, "height", x.size(1), p.kernel_h, p.stride_h, p.pad_h, p.dilation_h, p.ceil_mode);
  const int64_t Q = pooled_size(op, "width", x.size(2), p.kernel_w, p.stride_w, p.pad_w, p.dilation_w, p.ceil_mode);
  return {x.size(0), P, Q, x.size(3)};
}

// out (or dout) must be (N,P,Q,C) for x (or dx) of (N,H,W,C), with x's dtype.
static void check_pooled(const char* op, const Tensor& t, const char* name, const Shape& expected, const Tensor& x,
                         const char* x_name) {
  std::string why = "the pooled shape of " + std::string(x_name) + " " + shape_str(x.shape());
  check_shape(op, t, name, expected, why.c_str());
  check_same_dtype(op, x, x_name, t, name);
  check_contiguous(op, t, name);
}

#ifdef TG_CUDA
static cuda::MaxPoolShape cuda_max_shape(const cpu::MaxPoolGeometry& g) {
  return {g.H, g.W, g.P, g.Q, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dilation_h, g.dilation_w};
}
#endif

static cpu::MaxPoolGeometry max_geometry(const Shape& in, const Shape& out, const Pool2dParams& p) {
  return {in[1], in[2], out[1], out[2], p.kernel_h, p.kernel_w, p.stride_h, p.stride_w,
          p.pad_h, p.pad_w, p.dilation_h, p.dilation_w};
}

// The forward's geometry travels with argmax's shape and dx's: the backward needs no parameters.
static void check_argmax(const Tensor& argmax, const Shape& pooled) {
  check_shape(kMaxOp, argmax, "argmax", pooled, "the pooled shape");
  check_dtype(kMaxOp, argmax, "argmax", DType::I32);
  check_contiguous(kMaxOp, argmax, "argmax");
}

void maxpool2d_forward(Tensor& out, Tensor& argmax, const Tensor& x, const Pool2dParams& p) {
  const Shape pooled = pool2d_output_shape(kMaxOp, x, p, /*dilated=*/true);
  check_pooled(kMaxOp, out, "out", pooled, x, "x");
  check_argmax(argmax, pooled);
  if (x.size(1) * x.size(2) > INT32_MAX)
    throw Error(std::string(kMaxOp) + ": x has shape " + shape_str(x.shape()) + ", more than 2^31 positions for i32 argmax");
  Device device = check_same_device(kMaxOp, {&out, &argmax, &x});
  // One compare per element under each window.
  ProfiledOp profiled("max_pool2d", [&](OpCost& c) {
    c.reads("x", x).writes("out", out).writes("argmax", argmax);
    c.flops = static_cast<double>(out.numel()) * static_cast<double>(p.kernel_h * p.kernel_w);
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::maxpool2d_forward(staged.out(out), argmax.data<int32_t>(), staged.in(x), x.size(0), x.size(3),
                             max_geometry(x.shape(), pooled, p));
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::maxpool2d_forward(x.dtype(), out.data_raw(), argmax.data<int32_t>(), x.data_raw(), x.size(0), x.size(3),
                              cuda_max_shape(max_geometry(x.shape(), pooled, p)));
      break;
#endif
    default: throw_unsupported_device(kMaxOp, device);
  }
}

void maxpool2d_backward(Tensor& dx, const Tensor& dout, const Tensor& argmax) {
  check_feature_map(kMaxOp, dx, "dx");
  check_float_or_half_contiguous(kMaxOp, dout, "dout");
  check_dim(kMaxOp, dout, "dout", 4);
  const Shape pooled = dout.shape();
  if (pooled[0] != dx.size(0) || pooled[3] != dx.size(3))
    throw Error(std::string(kMaxOp) + ": dout has shape " + shape_str(pooled) + " but dx has " + shape_str(dx.shape()) +
                "; N and C must match");
  check_same_dtype(kMaxOp, dx, "dx", dout, "dout");
  check_argmax(argmax, pooled);
  Device device = check_same_device(kMaxOp, {&dx, &dout, &argmax});
  ProfiledOp profiled("max_pool2d_backward", [&](OpCost& c) {
    c.reads("dout", dout).reads("argmax", argmax).updates("dx", dx);
    c.flops = static_cast<double>(dout.numel());
  });
  // Only H, W, P and Q are read: the taps were resolved into argmax by the forward.
  const cpu::MaxPoolGeometry g{dx.size(1), dx.size(2), pooled[1], pooled[2], 1, 1, 1, 1, 0, 0, 1, 1};
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;  // as on CUDA: the gradients routed to one input add in f32, rounded once
      cpu::maxpool2d_backward(staged.inout(dx), staged.in(dout), argmax.data<int32_t>(), dx.size(0), dx.size(3), g);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      // Half dtypes route the gradients into an f32 copy of dx, so each input rounds once.
      Tensor scratch;
      const int64_t floats = cuda::maxpool2d_backward_scratch_floats(dx.dtype(), dx.size(0), g.H, g.W, dx.size(3));
      if (floats > 0) scratch = Tensor::empty({floats}, DType::F32, device);
      cuda::maxpool2d_backward(dx.dtype(), dx.data_raw(), scratch.defined() ? scratch.data<float>() : nullptr,
                               dout.data_raw(), argmax.data<int32_t>(), dx.size(0), dx.size(3), cuda_max_shape(g));
      break;
    }
#endif
    default: throw_unsupported_device(kMaxOp, device);
  }
}

// PyTorch's avg_pool2d windows along one axis: [i*stride - pad, + kernel) cut at the far padding
// edge; that length is the count with count_include_pad, the taps inside the input without it.
static std::vector<cpu::PoolBin> average_bins(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                                              bool count_include_pad) {
  std::vector<cpu::PoolBin> bins(out);
  for (int64_t i = 0; i < out; i++) {
    const int64_t begin = i * stride - pad, end = std::min(begin + kernel, in + pad);
    const int64_t inside_begin = std::max<int64_t>(begin, 0), inside_end = std::min(end, in);
    bins[i] = {inside_begin, inside_end, count_include_pad ? end - begin : inside_end - inside_begin};
  }
  return bins;
}

// torch.nn.AdaptiveAvgPool2d's bins: [floor(i in / out), ceil((i + 1) in / out)).
static std::vector<cpu::PoolBin> adaptive_bins(int64_t in, int64_t out) {
  std::vector<cpu::PoolBin> bins(out);
  for (int64_t i = 0; i < out; i++) {
    const int64_t begin = i * in / out, end = ((i + 1) * in + out - 1) / out;
    bins[i] = {begin, end, end - begin};
  }
  return bins;
}

#ifdef TG_CUDA
// The bins as the CUDA kernels read them: (begin, end, count) i32 triples on `device`.
static Tensor device_bins(const std::vector<cpu::PoolBin>& bins, Device device) {
  std::vector<int32_t> flat;
  for (const cpu::PoolBin& b : bins) {
    flat.push_back(static_cast<int32_t>(b.begin));
    flat.push_back(static_cast<int32_t>(b.end));
    flat.push_back(static_cast<int32_t>(b.count));
  }
  return Tensor::from_ints(flat, {static_cast<int64_t>(bins.size()), 3}).to(device);
}
#endif

// x or dx (N,H,W,C) with out or dout (N,P,Q,C) through the given bins.
static void average(const char* op, bool backward, Tensor& grad_or_out, const Tensor& x_or_dout,
                    const std::vector<cpu::PoolBin>& h_bins, const std::vector<cpu::PoolBin>& w_bins) {
  Device device = check_same_device(op, {&grad_or_out, &x_or_dout});
  const Tensor& image = backward ? grad_or_out : x_or_dout;  // (N,H,W,C)
  const int64_t N = image.size(0), H = image.size(1), W = image.size(2), C = image.size(3);
  const int64_t P = static_cast<int64_t>(h_bins.size()), Q = static_cast<int64_t>(w_bins.size());
  ProfiledOp profiled(backward ? (op == kAvgOp ? "avg_pool2d_backward" : "adaptive_avg_pool2d_backward") : op,
                      [&](OpCost& c) {
                        c.reads(backward ? "dout" : "x", x_or_dout);
                        if (backward) c.updates("dx", grad_or_out);
                        else c.writes("out", grad_or_out);
                        c.flops = static_cast<double>(image.numel());
                      });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;  // the backward's dx += in f32, rounded once
      if (backward)
        cpu::avgpool2d_backward(staged.inout(grad_or_out), staged.in(x_or_dout), N, H, W, C, h_bins.data(), P,
                                w_bins.data(), Q);
      else
        cpu::avgpool2d_forward(staged.out(grad_or_out), staged.in(x_or_dout), N, H, W, C, h_bins.data(), P,
                               w_bins.data(), Q);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      const Tensor h = device_bins(h_bins, device), w = device_bins(w_bins, device);
      if (backward)
        cuda::avgpool2d_backward(image.dtype(), grad_or_out.data_raw(), x_or_dout.data_raw(), N, H, W, C,
                                 h.data<int32_t>(), P, w.data<int32_t>(), Q);
      else
        cuda::avgpool2d_forward(image.dtype(), grad_or_out.data_raw(), x_or_dout.data_raw(), N, H, W, C,
                                h.data<int32_t>(), P, w.data<int32_t>(), Q);
      break;
    }
#endif
    default: throw_unsupported_device(op, device);
  }
}

void avgpool2d_forward(Tensor& out, const Tensor& x, const Pool2dParams& p) {
  const Shape pooled = pool2d_output_shape(kAvgOp, x, p, /*dilated=*/false);
  check_pooled(kAvgOp, out, "out", pooled, x, "x");
  average(kAvgOp, false, out, x,
          average_bins(x.size(1), pooled[1], p.kernel_h, p.stride_h, p.pad_h, p.count_include_pad),
          average_bins(x.size(2), pooled[2], p.kernel_w, p.stride_w, p.pad_w, p.count_include_pad));
}

void avgpool2d_backward(Tensor& dx, const Tensor& dout, const Pool2dParams& p) {
  const Shape pooled = pool2d_output_shape(kAvgOp, dx, p, /*dilated=*/false);
  check_pooled(kAvgOp, dout, "dout", pooled, dx, "dx");
  average(kAvgOp, true, dx, dout,
          average_bins(dx.size(1), pooled[1], p.kernel_h, p.stride_h, p.pad_h, p.count_include_pad),
          average_bins(dx.size(2), pooled[2], p.kernel_w, p.stride_w, p.pad_w, p.count_include_pad));
}

// out or dout (N,P,Q,C) against x or dx (N,H,W,C): any P, Q >= 1.
static void check_adaptive(const Tensor& pooled, const char* pooled_name, const Tensor& image, const char* image_name) {
  check_feature_map(kAdaptiveOp, image, image_name);
  check_float_or_half_contiguous(kAdaptiveOp, pooled, pooled_name);
  if (pooled.dim() != 4 || pooled.size(0) != image.size(0) || pooled.size(3) != image.size(3) || pooled.size(1) < 1 ||
      pooled.size(2) < 1)
    throw Error(std::string(kAdaptiveOp) + ": " + pooled_name + " has shape " + shape_str(pooled.shape()) +
                ", expected (N, P, Q, C) with P, Q >= 1 for " + image_name + " " + shape_str(image.shape()));
  check_same_dtype(kAdaptiveOp, image, image_name, pooled, pooled_name);
}

void adaptive_avgpool2d_forward(Tensor& out, const Tensor& x) {
  check_adaptive(out, "out", x, "x");
  average(kAdaptiveOp, false, out, x, adaptive_bins(x.size(1), out.size(1)), adaptive_bins(x.size(2), out.size(2)));
}

void adaptive_avgpool2d_backward(Tensor& dx, const Tensor& dout) {
  check_adaptive(dout, "dout", dx, "dx");
  average(kAdaptiveOp, true, dx, dout, adaptive_bins(dx.size(1), dout.size(1)), adaptive_bins(dx.size(2), dout.size(2)));
}

}  // namespace tg::ops
