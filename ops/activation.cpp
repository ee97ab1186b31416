#include "ops/activation.h"

#include "ops/check.h"
#include "ops/cpu/activation.h"

namespace tg::ops {

namespace {
using ForwardKernel = void (*)(float*, const float*, int64_t);
using BackwardKernel = void (*)(float*, const float*, const float*, int64_t);

void unary_forward(const char* op, ForwardKernel cpu_kernel, Tensor& out, const Tensor& inp) {
  Device device = check_elementwise(op, {{&inp, "inp"}, {&out, "out"}});
  switch (device.type) {
    case DeviceType::CPU: cpu_kernel(out.data<float>(), inp.data<float>(), inp.numel()); break;
    default: throw_unsupported_device(op, device);
  }
}

// `saved` is the input or the output of the forward, whichever the derivative is written in.
void unary_backward(const char* op, BackwardKernel cpu_kernel, Tensor& dinp, const Tensor& saved,
                    const char* saved_name, const Tensor& dout) {
  Device device = check_elementwise(op, {{&dout, "dout"}, {&saved, saved_name}, {&dinp, "dinp"}});
  switch (device.type) {
    case DeviceType::CPU: cpu_kernel(dinp.data<float>(), saved.data<float>(), dout.data<float>(), dout.numel()); break;
    default: throw_unsupported_device(op, device);
  }
}
}  // namespace

void gelu_forward(Tensor& out, const Tensor& inp) { unary_forward("gelu", cpu::gelu_forward, out, inp); }
void gelu_backward(Tensor& dinp, const Tensor& inp, const Tensor& dout) {
  unary_backward("gelu_backward", cpu::gelu_backward, dinp, inp, "inp", dout);
}
void relu_forward(Tensor& out, const Tensor& inp) { unary_forward("relu", cpu::relu_forward, out, inp); }
void relu_backward(Tensor& dinp, const Tensor& out, const Tensor& dout) {
  unary_backward("relu_backward", cpu::relu_backward, dinp, out, "out", dout);
}
void tanh_forward(Tensor& out, const Tensor& inp) { unary_forward("tanh", cpu::tanh_forward, out, inp); }
void tanh_backward(Tensor& dinp, const Tensor& out, const Tensor& dout) {
  unary_backward("tanh_backward", cpu::tanh_backward, dinp, out, "out", dout);
}

}  // namespace tg::ops
