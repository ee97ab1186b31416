#include "ops/softmax.h"

#include <string>

#include "ops/check.h"
#include "ops/cpu/softmax.h"

namespace tg::ops {

namespace {
using ForwardKernel = void (*)(float*, const float*, int64_t, int64_t);
using BackwardKernel = void (*)(float*, const float*, const float*, int64_t, int64_t);

void check_has_rows(const char* op, const Tensor& t, const char* name) {
  if (t.dim() == 0)
    throw Error(std::string(op) + ": " + name + " is a scalar (shape ()); it needs a last dimension to normalise over");
}

void rows_forward(const char* op, ForwardKernel cpu_kernel, Tensor& out, const Tensor& inp) {
  check_has_rows(op, inp, "inp");
  Device device = check_elementwise(op, {{&inp, "inp"}, {&out, "out"}});
  int64_t C = inp.size(-1), rows = C == 0 ? 0 : inp.numel() / C;
  switch (device.type) {
    case DeviceType::CPU: cpu_kernel(out.data<float>(), inp.data<float>(), rows, C); break;
    default: throw_unsupported_device(op, device);
  }
}

void rows_backward(const char* op, BackwardKernel cpu_kernel, Tensor& dinp, const Tensor& out, const Tensor& dout) {
  check_has_rows(op, out, "out");
  Device device = check_elementwise(op, {{&dout, "dout"}, {&out, "out"}, {&dinp, "dinp"}});
  int64_t C = out.size(-1), rows = C == 0 ? 0 : out.numel() / C;
  switch (device.type) {
    case DeviceType::CPU: cpu_kernel(dinp.data<float>(), out.data<float>(), dout.data<float>(), rows, C); break;
    default: throw_unsupported_device(op, device);
  }
}
}  // namespace

void softmax_forward(Tensor& out, const Tensor& inp) { rows_forward("softmax", cpu::softmax_forward, out, inp); }
void softmax_backward(Tensor& dinp, const Tensor& out, const Tensor& dout) {
  rows_backward("softmax_backward", cpu::softmax_backward, dinp, out, dout);
}
void log_softmax_forward(Tensor& out, const Tensor& inp) {
  rows_forward("log_softmax", cpu::log_softmax_forward, out, inp);
}
void log_softmax_backward(Tensor& dinp, const Tensor& out, const Tensor& dout) {
  rows_backward("log_softmax_backward", cpu::log_softmax_backward, dinp, out, dout);
}

}  // namespace tg::ops
