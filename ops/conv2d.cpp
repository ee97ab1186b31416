#include "ops/conv2d.h"

#include <cstdlib>
#include <string>

#include "ops/check.h"
#include "ops/cpu/conv2d.h"

namespace tg::ops {

static const char* kOp = "conv2d";

static std::string str(int64_t v) { return std::to_string(v); }

int64_t conv2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  // Floor division of a possibly negative numerator, so that too small an input reads as < 1.
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1;
  const int64_t size = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
  if (size < 1)
    throw Error(std::string(kOp) + ": output size (in + 2*pad - dilation*(kernel-1) - 1) / stride + 1 = (" + str(in) +
                " + 2*" + str(pad) + " - " + str(dilation) + "*" + str(kernel - 1) + " - 1) / " + str(stride) +
                " + 1 = " + str(size) + " is below 1: the input is smaller than the dilated kernel");
  return size;
}

static void check_param(const char* name, int64_t value, int64_t minimum) {
  if (value < minimum)
    throw Error(std::string(kOp) + ": " + name + " is " + str(value) + ", expected >= " + str(minimum));
}

// x (or dx, named `x_name`) (N,H,W,C) and weight (K, C/groups, R, S) with the params -> every size
// of the convolution, after checking that they fit together.
static cpu::Conv2dGeometry geometry(const Tensor& x, const char* x_name, const Tensor& weight, const Conv2dParams& p,
                                    const char* weight_name = "weight") {
  check_defined(kOp, x, x_name);
  check_defined(kOp, weight, weight_name);
  if (x.dim() != 4)
    throw Error(std::string(kOp) + ": " + x_name + " has shape " + shape_str(x.shape()) +
                ", expected 4 dimensions (N, H, W, C), channels last");
  if (weight.dim() != 4)
    throw Error(std::string(kOp) + ": " + weight_name + " has shape " + shape_str(weight.shape()) +
                ", expected 4 dimensions (K, C/groups, R, S)");
  check_float_contiguous(kOp, x, x_name);
  check_same_dtype(kOp, x, x_name, weight, weight_name);
  check_contiguous(kOp, weight, weight_name);
  check_param("stride_h", p.stride_h, 1);
  check_param("stride_w", p.stride_w, 1);
  check_param("pad_h", p.pad_h, 0);
  check_param("pad_w", p.pad_w, 0);
  check_param("dilation_h", p.dilation_h, 1);
  check_param("dilation_w", p.dilation_w, 1);
  check_param("groups", p.groups, 1);
  cpu::Conv2dGeometry g;
  g.N = x.size(0), g.H = x.size(1), g.W = x.size(2), g.C = x.size(3);
  g.K = weight.size(0), g.R = weight.size(2), g.S = weight.size(3);
  g.stride_h = p.stride_h, g.stride_w = p.stride_w, g.pad_h = p.pad_h, g.pad_w = p.pad_w;
  g.dilation_h = p.dilation_h, g.dilation_w = p.dilation_w, g.groups = p.groups;
  if (g.C < 1 || g.H < 1 || g.W < 1)
    throw Error(std::string(kOp) + ": " + x_name + " has shape " + shape_str(x.shape()) +
                ", expected H, W and C of at least 1");
  if (g.K < 1 || g.R < 1 || g.S < 1)
    throw Error(std::string(kOp) + ": " + weight_name + " has shape " + shape_str(weight.shape()) +
                ", expected K, R and S of at least 1");
  if (g.C % g.groups)
    throw Error(std::string(kOp) + ": groups " + str(g.groups) + " does not divide the " + str(g.C) +
                " channels of " + x_name + " " + shape_str(x.shape()));
  if (g.K % g.groups)
    throw Error(std::string(kOp) + ": groups " + str(g.groups) + " does not divide the " + str(g.K) +
                " filters of " + weight_name + " " + shape_str(weight.shape()));
  if (weight.size(1) != g.C / g.groups)
    throw Error(std::string(kOp) + ": " + weight_name + " has shape " + shape_str(weight.shape()) + ", expected (K, " +
                str(g.C / g.groups) + ", R, S): C/groups = " + str(g.C) + "/" + str(g.groups) + " channels of " +
                x_name + " " + shape_str(x.shape()) + " per filter");
  g.P = conv2d_output_size(g.H, g.R, g.stride_h, g.pad_h, g.dilation_h);
  g.Q = conv2d_output_size(g.W, g.S, g.stride_w, g.pad_w, g.dilation_w);
  return g;
}

// An activation-shaped tensor: shape `expected`, the dtype of `like`, contiguous.
static void check_activation(const Tensor& t, const char* name, const Shape& expected, const char* why,
                             const Tensor& like, const char* like_name) {
  check_shape(kOp, t, name, expected, why);
  check_same_dtype(kOp, like, like_name, t, name);
  check_contiguous(kOp, t, name);
}

// bias or its gradient: undefined, or (K) of weight's dtype, contiguous.
static void check_bias(const Tensor& t, const char* name, const cpu::Conv2dGeometry& g, const Tensor& weight,
                       const char* weight_name) {
  if (!t.defined()) return;
  check_shape(kOp, t, name, {g.K}, "one per filter: the first dimension of the weight");
  check_same_dtype(kOp, weight, weight_name, t, name);
  check_contiguous(kOp, t, name);
}

static float* optional_data(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

[[noreturn]] static void throw_no_cuda_kernel() { throw Error(std::string(kOp) + " has no CUDA kernel yet"); }

// ---- algorithm choice -------------------------------------------------------------------------

namespace {
enum class AlgoRequest { Auto, Im2col, Winograd };

// TG_CONV_ALGO, read here and nowhere else. A bad value throws on every call (the static is only
// set by a successful parse), so the message cannot be missed.
AlgoRequest algo_request() {
  static const AlgoRequest request = [] {
    const char* env = std::getenv("TG_CONV_ALGO");
    const std::string value = env ? env : "auto";
    if (value == "auto") return AlgoRequest::Auto;
    if (value == "im2col") return AlgoRequest::Im2col;
    if (value == "winograd") return AlgoRequest::Winograd;
    throw Error(std::string(kOp) + ": TG_CONV_ALGO is '" + value + "', expected im2col, winograd or auto");
  }();
  return request;
}
}  // namespace

ConvAlgo conv2d_algorithm(const Tensor& x, const Tensor& weight, const Conv2dParams& p) {
  geometry(x, "x", weight, p);
  switch (algo_request()) {
    case AlgoRequest::Im2col: return ConvAlgo::Im2col;
    case AlgoRequest::Winograd:
      throw Error(std::string(kOp) + ": TG_CONV_ALGO=winograd, but this build has no Winograd kernel yet "
                  "(use im2col or auto)");
    case AlgoRequest::Auto: break;
  }
  // The per-shape rule goes here once a second algorithm exists (Winograd where it measures faster:
  // 3x3, stride 1, dilation 1).
  return ConvAlgo::Im2col;
}

// ---- the fronts -------------------------------------------------------------------------------

Shape conv2d_output_shape(const Tensor& x, const Tensor& weight, const Conv2dParams& p) {
  const cpu::Conv2dGeometry g = geometry(x, "x", weight, p);
  return {g.N, g.P, g.Q, g.K};
}

void conv2d_forward(Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  const cpu::Conv2dGeometry g = geometry(x, "x", weight, p);
  check_bias(bias, "bias", g, weight, "weight");
  check_activation(out, "out", {g.N, g.P, g.Q, g.K}, "(N, P, Q, K)", x, "x");
  const Device device = check_same_device(kOp, {&out, &x, &weight, &bias});
  switch (device.type) {
    case DeviceType::CPU:
      switch (conv2d_algorithm(x, weight, p)) {
        case ConvAlgo::Im2col:
          cpu::conv2d_forward(out.data<float>(), x.data<float>(), weight.data<float>(), optional_data(bias), g);
          break;
        case ConvAlgo::Winograd: throw Error(std::string(kOp) + ": no Winograd kernel in this build");
      }
      break;
    case DeviceType::CUDA: throw_no_cuda_kernel();
  }
}

void conv2d_backward_input(Tensor& dx, const Tensor& dout, const Tensor& weight, const Conv2dParams& p) {
  const cpu::Conv2dGeometry g = geometry(dx, "dx", weight, p);
  check_activation(dout, "dout", {g.N, g.P, g.Q, g.K}, "(N, P, Q, K), the output's shape", dx, "dx");
  const Device device = check_same_device(kOp, {&dx, &dout, &weight});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::conv2d_backward_input(dx.data<float>(), dout.data<float>(), weight.data<float>(), g);
      break;
    case DeviceType::CUDA: throw_no_cuda_kernel();
  }
}

void conv2d_backward_weight(Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x, const Conv2dParams& p) {
  // dweight gives the weight's shape (K, C/groups, R, S), so it is checked as the weight would be.
  const cpu::Conv2dGeometry g = geometry(x, "x", dweight, p, "dweight");
  check_bias(dbias, "dbias", g, dweight, "dweight");
  check_activation(dout, "dout", {g.N, g.P, g.Q, g.K}, "(N, P, Q, K), the output's shape", x, "x");
  const Device device = check_same_device(kOp, {&dweight, &dbias, &dout, &x});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::conv2d_backward_weight(dweight.data<float>(), optional_data(dbias), dout.data<float>(), x.data<float>(), g);
      break;
    case DeviceType::CUDA: throw_no_cuda_kernel();
  }
}

}  // namespace tg::ops
