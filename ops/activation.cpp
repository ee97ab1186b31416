#include "ops/activation.h"

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/activation.h"
#ifdef TG_CUDA
#include "ops/cuda/activation.h"
#endif

namespace tg::ops {

namespace {
Device check_forward(const char* op, const Tensor& out, const Tensor& inp) {
  return check_elementwise(op, {{&inp, "inp"}, {&out, "out"}});
}
// `saved` is the input or the output of the forward, whichever the derivative is written in.
Device check_backward(const char* op, const Tensor& dinp, const Tensor& saved, const char* saved_name,
                      const Tensor& dout) {
  return check_elementwise(op, {{&dout, "dout"}, {&saved, saved_name}, {&dinp, "dinp"}});
}
}  // namespace

void gelu_forward(Tensor& out, const Tensor& inp) {
  const char* op = "gelu";
  Device device = check_forward(op, out, inp);
  // Profiler FLOPs per element (ops/profiler.h) count a tanh or exp as one: these passes are
  // memory-bound by far, and the roofline needs only their order.
  ProfiledOp profiled("gelu", [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = 9 * static_cast<double>(inp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&out, PointwiseOperand::Out}, {&inp, PointwiseOperand::In}}, inp.numel(),
                       [&](float* const* p, int64_t n) { cpu::gelu_forward(p[0], p[1], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::gelu_forward(out.dtype(), out.data_raw(), inp.data_raw(), inp.numel()); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  const char* op = "gelu_backward";
  Device device = check_backward(op, dinp, inp, "inp", dout);
  ProfiledOp profiled("gelu_backward", [&](OpCost& c) { c.reads("dout", dout).reads("inp", inp).updates("dinp", dinp); c.flops = 18 * static_cast<double>(dout.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&dinp, PointwiseOperand::InOut}, {&inp, PointwiseOperand::In}, {&dout, PointwiseOperand::In}},
                       dout.numel(),
                       [&](float* const* p, int64_t n) { cpu::gelu_backward(p[0], p[1], p[2], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::gelu_backward(dout.dtype(), dinp.data_raw(), inp.data_raw(), dout.data_raw(), dout.numel());
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void relu_forward(Tensor& out, const Tensor& inp) {
  const char* op = "relu";
  Device device = check_forward(op, out, inp);
  ProfiledOp profiled("relu", [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = 1 * static_cast<double>(inp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&out, PointwiseOperand::Out}, {&inp, PointwiseOperand::In}}, inp.numel(),
                       [&](float* const* p, int64_t n) { cpu::relu_forward(p[0], p[1], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::relu_forward(out.dtype(), out.data_raw(), inp.data_raw(), inp.numel()); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void relu_backward(Tensor& dinp, const Tensor& out, const Tensor& dout) {
  const char* op = "relu_backward";
  Device device = check_backward(op, dinp, out, "out", dout);
  ProfiledOp profiled("relu_backward", [&](OpCost& c) { c.reads("dout", dout).reads("out", out).updates("dinp", dinp); c.flops = 2 * static_cast<double>(dout.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&dinp, PointwiseOperand::InOut}, {&out, PointwiseOperand::In}, {&dout, PointwiseOperand::In}},
                       dout.numel(),
                       [&](float* const* p, int64_t n) { cpu::relu_backward(p[0], p[1], p[2], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::relu_backward(dout.dtype(), dinp.data_raw(), out.data_raw(), dout.data_raw(), dout.numel());
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void tanh_forward(Tensor& out, const Tensor& inp) {
  const char* op = "tanh";
  Device device = check_forward(op, out, inp);
  ProfiledOp profiled("tanh", [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = 1 * static_cast<double>(inp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&out, PointwiseOperand::Out}, {&inp, PointwiseOperand::In}}, inp.numel(),
                       [&](float* const* p, int64_t n) { cpu::tanh_forward(p[0], p[1], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::tanh_forward(out.dtype(), out.data_raw(), inp.data_raw(), inp.numel()); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void tanh_backward(Tensor& dinp, const Tensor& out, const Tensor& dout) {
  const char* op = "tanh_backward";
  Device device = check_backward(op, dinp, out, "out", dout);
  ProfiledOp profiled("tanh_backward", [&](OpCost& c) { c.reads("dout", dout).reads("out", out).updates("dinp", dinp); c.flops = 4 * static_cast<double>(dout.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&dinp, PointwiseOperand::InOut}, {&out, PointwiseOperand::In}, {&dout, PointwiseOperand::In}},
                       dout.numel(),
                       [&](float* const* p, int64_t n) { cpu::tanh_backward(p[0], p[1], p[2], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::tanh_backward(dout.dtype(), dinp.data_raw(), out.data_raw(), dout.data_raw(), dout.numel());
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void sigmoid_forward(Tensor& out, const Tensor& inp) {
  const char* op = "sigmoid";
  Device device = check_forward(op, out, inp);
  ProfiledOp profiled("sigmoid", [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = 4 * static_cast<double>(inp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&out, PointwiseOperand::Out}, {&inp, PointwiseOperand::In}}, inp.numel(),
                       [&](float* const* p, int64_t n) { cpu::sigmoid_forward(p[0], p[1], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::sigmoid_forward(out.dtype(), out.data_raw(), inp.data_raw(), inp.numel()); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void sigmoid_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  const char* op = "sigmoid_backward";
  Device device = check_backward(op, dinp, inp, "inp", dout);
  ProfiledOp profiled("sigmoid_backward", [&](OpCost& c) { c.reads("dout", dout).reads("inp", inp).updates("dinp", dinp); c.flops = 8 * static_cast<double>(dout.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&dinp, PointwiseOperand::InOut}, {&inp, PointwiseOperand::In}, {&dout, PointwiseOperand::In}},
                       dout.numel(),
                       [&](float* const* p, int64_t n) { cpu::sigmoid_backward(p[0], p[1], p[2], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::sigmoid_backward(dout.dtype(), dinp.data_raw(), inp.data_raw(), dout.data_raw(), dout.numel());
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void silu_forward(Tensor& out, const Tensor& inp) {
  const char* op = "silu";
  Device device = check_forward(op, out, inp);
  ProfiledOp profiled("silu", [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = 5 * static_cast<double>(inp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&out, PointwiseOperand::Out}, {&inp, PointwiseOperand::In}}, inp.numel(),
                       [&](float* const* p, int64_t n) { cpu::silu_forward(p[0], p[1], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::silu_forward(out.dtype(), out.data_raw(), inp.data_raw(), inp.numel()); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void silu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  const char* op = "silu_backward";
  Device device = check_backward(op, dinp, inp, "inp", dout);
  ProfiledOp profiled("silu_backward", [&](OpCost& c) { c.reads("dout", dout).reads("inp", inp).updates("dinp", dinp); c.flops = 10 * static_cast<double>(dout.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      staged_pointwise({{&dinp, PointwiseOperand::InOut}, {&inp, PointwiseOperand::In}, {&dout, PointwiseOperand::In}},
                       dout.numel(),
                       [&](float* const* p, int64_t n) { cpu::silu_backward(p[0], p[1], p[2], n); });
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::silu_backward(dout.dtype(), dinp.data_raw(), inp.data_raw(), dout.data_raw(), dout.numel());
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

}  // namespace tg::ops
