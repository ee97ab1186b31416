#include "ops/conv2d.h"

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/conv2d.h"
#include "ops/cpu/conv2d_winograd.h"
#include "ops/flops.h"
#ifdef TG_CUDA
#include "ops/cuda/conv2d.h"
#endif

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
  check_float_or_half_contiguous(kOp, x, x_name);
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

// Every pass (forward, input gradient, weight gradient) is one multiply-add per (output pixel,
// filter, tap of the patch): 2 N P Q K (C/groups) R S FLOPs, whatever algorithm runs it (Winograd's
// fewer multiplications still count as the convolution's FLOPs, the convention MFU uses).
static double multiply_add_flops(const cpu::Conv2dGeometry& g) {
  return 2.0 * static_cast<double>(g.output_pixels()) * static_cast<double>(g.K) * static_cast<double>(g.patch_size());
}

#ifdef TG_CUDA
static void* optional_raw(const Tensor& t) { return t.defined() ? t.data_raw() : nullptr; }

static cuda::ConvShape cuda_shape(const cpu::Conv2dGeometry& g) {
  return {g.N, g.H, g.W, g.C, g.K, g.R, g.S, g.P, g.Q,
          g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dilation_h, g.dilation_w, g.groups};
}
#endif

// ---- algorithm choice -------------------------------------------------------------------------

namespace {
enum class AlgoRequest { Auto, Timed, Im2col, Winograd };

// TG_CONV_ALGO, read here and nowhere else. A bad value throws on every call (the static is only
// set by a successful parse), so the message cannot be missed.
AlgoRequest algo_request() {
  static const AlgoRequest request = [] {
    const char* env = std::getenv("TG_CONV_ALGO");
    const std::string value = env ? env : "auto";
    if (value == "auto") return AlgoRequest::Auto;
    if (value == "timed") return AlgoRequest::Timed;
    if (value == "im2col") return AlgoRequest::Im2col;
    if (value == "winograd") return AlgoRequest::Winograd;
    throw Error(std::string(kOp) + ": TG_CONV_ALGO is '" + value + "', expected auto, timed, im2col or winograd");
  }();
  return request;
}

bool winograd_serves(const cpu::Conv2dGeometry& g) {
  return cpu::winograd_applicable(g.R, g.S, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.groups, g.pad_h,
                                  g.pad_w);
}

// TG_CONV_ALGO=timed: each (pass, shape) is timed once with both algorithms, on scratch buffers,
// and the faster is kept for the life of the process.
struct TimedChoices {
  std::mutex mutex;
  std::map<std::vector<int64_t>, ConvAlgo> chosen;
};
TimedChoices& timed_choices() {
  static TimedChoices choices;
  return choices;
}

double seconds_of(const std::function<void()>& run) {
  auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void run_forward(ConvAlgo algo, float* out, const float* x, const float* weight, const float* bias,
                 const cpu::Conv2dGeometry& g) {
  if (algo == ConvAlgo::Winograd)
    cpu::conv2d_winograd_forward(out, x, weight, bias, g.N, g.H, g.W, g.C, g.K, g.pad_h, g.pad_w);
  else
    cpu::conv2d_forward(out, x, weight, bias, g);
}

void run_backward_input(ConvAlgo algo, float* dx, const float* dout, const float* weight,
                        const cpu::Conv2dGeometry& g) {
  if (algo == ConvAlgo::Winograd)
    cpu::conv2d_winograd_backward_input(dx, dout, weight, g.N, g.H, g.W, g.C, g.K, g.pad_h, g.pad_w);
  else
    cpu::conv2d_backward_input(dx, dout, weight, g);
}

ConvAlgo timed_choice(ConvPass pass, const cpu::Conv2dGeometry& g) {
  const std::vector<int64_t> key = {static_cast<int64_t>(pass), g.N, g.H, g.W, g.C, g.K, g.pad_h, g.pad_w};
  TimedChoices& choices = timed_choices();
  std::lock_guard<std::mutex> lock(choices.mutex);
  auto found = choices.chosen.find(key);
  if (found != choices.chosen.end()) return found->second;
  // Inputs of ones: the time of these kernels does not depend on the values.
  std::vector<float> in(static_cast<size_t>(g.N * g.H * g.W * g.C), 1.0f), weight(static_cast<size_t>(g.K * g.C * 9), 1.0f);
  std::vector<float> out(static_cast<size_t>(g.N * g.P * g.Q * g.K), 1.0f);
  double seconds[2];
  for (ConvAlgo algo : {ConvAlgo::Im2col, ConvAlgo::Winograd}) {
    auto run = [&] {
      if (pass == ConvPass::Forward) run_forward(algo, out.data(), in.data(), weight.data(), nullptr, g);
      else run_backward_input(algo, in.data(), out.data(), weight.data(), g);
    };
    run();  // warm: first-touch of the scratch, the kernels' own buffers
    seconds[static_cast<int>(algo)] = seconds_of(run);
  }
  ConvAlgo faster = seconds[1] < seconds[0] ? ConvAlgo::Winograd : ConvAlgo::Im2col;
  choices.chosen[key] = faster;
  return faster;
}
}  // namespace

ConvAlgo conv2d_algorithm(const Tensor& x, const Tensor& weight, const Conv2dParams& p, ConvPass pass) {
  const cpu::Conv2dGeometry g = geometry(x, "x", weight, p);
  const bool winograd = winograd_serves(g);
  switch (algo_request()) {
    case AlgoRequest::Im2col: return ConvAlgo::Im2col;
    case AlgoRequest::Winograd: return winograd ? ConvAlgo::Winograd : ConvAlgo::Im2col;
    case AlgoRequest::Timed: return winograd ? timed_choice(pass, g) : ConvAlgo::Im2col;
    case AlgoRequest::Auto: break;
  }
  // The measured rule (bench_conv_winograd, 2 threads, batch 128): F(4x4,3x3) beat the implicit
  // GEMM's own bound ("gemm alone") by 1.09-1.65x, forward and input gradient, on every 3x3
  // stride-1 layer of cnn-ref and resnet from 32 channels up. Below 16 channels the transforms
  // cost more than the multiplications they save. A fixed rule, not a timing, so that every run of
  // a command computes the same bits (exact resume across processes).
  return winograd && g.C >= 16 && g.K >= 16 ? ConvAlgo::Winograd : ConvAlgo::Im2col;
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
  count_flops(multiply_add_flops(g));
  ProfiledOp profiled("conv2d", [&](OpCost& c) {
    c.reads("x", x).reads("weight", weight).reads("bias", bias).writes("out", out);
    c.flops = multiply_add_flops(g);  // nominal: Winograd does fewer multiplies for the same result
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;  // bf16/f16: the f32 kernel on widened copies, out rounded once
      run_forward(conv2d_algorithm(x, weight, p, ConvPass::Forward), staged.out(out), staged.in(x), staged.in(weight),
                  staged.in(bias), g);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::conv2d_forward(x.dtype(), out.data_raw(), x.data_raw(), weight.data_raw(), optional_raw(bias), cuda_shape(g));
      break;
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

void conv2d_backward_input(Tensor& dx, const Tensor& dout, const Tensor& weight, const Conv2dParams& p) {
  const cpu::Conv2dGeometry g = geometry(dx, "dx", weight, p);
  check_activation(dout, "dout", {g.N, g.P, g.Q, g.K}, "(N, P, Q, K), the output's shape", dx, "dx");
  const Device device = check_same_device(kOp, {&dx, &dout, &weight});
  count_flops(multiply_add_flops(g));
  ProfiledOp profiled("conv2d_backward_input", [&](OpCost& c) {
    c.reads("dout", dout).reads("weight", weight).updates("dx", dx);
    c.flops = multiply_add_flops(g);
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;  // dx += in f32, rounded once
      run_backward_input(conv2d_algorithm(dx, weight, p, ConvPass::InputGradient), staged.inout(dx), staged.in(dout),
                         staged.in(weight), g);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::conv2d_backward_input(dx.dtype(), dx.data_raw(), dout.data_raw(), weight.data_raw(), cuda_shape(g));
      break;
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

void conv2d_backward_weight(Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& x, const Conv2dParams& p) {
  // dweight gives the weight's shape (K, C/groups, R, S), so it is checked as the weight would be.
  const cpu::Conv2dGeometry g = geometry(x, "x", dweight, p, "dweight");
  check_bias(dbias, "dbias", g, dweight, "dweight");
  check_activation(dout, "dout", {g.N, g.P, g.Q, g.K}, "(N, P, Q, K), the output's shape", x, "x");
  const Device device = check_same_device(kOp, {&dweight, &dbias, &dout, &x});
  count_flops(multiply_add_flops(g));
  ProfiledOp profiled("conv2d_backward_weight", [&](OpCost& c) {
    c.reads("dout", dout).reads("x", x).updates("dweight", dweight).updates("dbias", dbias);
    c.flops = multiply_add_flops(g);
  });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;  // dweight and dbias += in f32, rounded once; an undefined dbias stays null
      cpu::conv2d_backward_weight(staged.inout(dweight), staged.inout(dbias), staged.in(dout), staged.in(x), g);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: {
      // The split-K slices' partial dweights and the chunks' partial dbias, added in order.
      Tensor scratch = Tensor::empty({cuda::conv2d_backward_weight_scratch_floats(cuda_shape(g))}, DType::F32, device);
      cuda::conv2d_backward_weight(x.dtype(), optional_raw(dweight), optional_raw(dbias), scratch.data<float>(),
                                   dout.data_raw(), x.data_raw(), cuda_shape(g));
      break;
    }
#endif
    default: throw_unsupported_device(kOp, device);
  }
}

}  // namespace tg::ops
