#include "ops/softmax.h"

#include <string>

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/softmax.h"
#ifdef TG_CUDA
#include "ops/cuda/softmax.h"
#endif

namespace tg::ops {

namespace {
// The (rows, C) view of the tensors, after the checks every softmax front shares.
struct Rows {
  Device device;
  int64_t rows = 0, C = 0;
};

void check_has_rows(const char* op, const Tensor& t, const char* name) {
  if (t.dim() == 0)
    throw Error(std::string(op) + ": " + name + " is a scalar (shape ()); it needs a last dimension to normalise over");
}

Rows rows_of(const Tensor& t, Device device) {
  int64_t C = t.size(-1);
  return {device, C == 0 ? 0 : t.numel() / C, C};
}

Rows check_forward(const char* op, const Tensor& out, const Tensor& inp) {
  check_has_rows(op, inp, "inp");
  return rows_of(inp, check_elementwise(op, {{&inp, "inp"}, {&out, "out"}}));
}

Rows check_backward(const char* op, const Tensor& dinp, const Tensor& out, const Tensor& dout) {
  check_has_rows(op, out, "out");
  return rows_of(out, check_elementwise(op, {{&dout, "dout"}, {&out, "out"}, {&dinp, "dinp"}}));
}
}  // namespace

void softmax_forward(Tensor& out, const Tensor& inp) {
  const char* op = "softmax";
  Rows r = check_forward(op, out, inp);
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = 4.0 * static_cast<double>(inp.numel()); });
  switch (r.device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::softmax_forward(staged.out(out), staged.in(inp), r.rows, r.C);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::softmax_forward(out.dtype(), out.data_raw(), inp.data_raw(), r.rows, r.C); break;
#endif
    default: throw_unsupported_device(op, r.device);
  }
}

void softmax_backward(Tensor& dinp, const Tensor& out, const Tensor& dout) {
  const char* op = "softmax_backward";
  Rows r = check_backward(op, dinp, out, dout);
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("out", out).reads("dout", dout).updates("dinp", dinp); c.flops = 3.0 * static_cast<double>(dout.numel()); });
  switch (r.device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::softmax_backward(staged.inout(dinp), staged.in(out), staged.in(dout), r.rows, r.C);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::softmax_backward(dout.dtype(), dinp.data_raw(), out.data_raw(), dout.data_raw(), r.rows, r.C);
      break;
#endif
    default: throw_unsupported_device(op, r.device);
  }
}

void log_softmax_forward(Tensor& out, const Tensor& inp) {
  const char* op = "log_softmax";
  Rows r = check_forward(op, out, inp);
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = 4.0 * static_cast<double>(inp.numel()); });
  switch (r.device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::log_softmax_forward(staged.out(out), staged.in(inp), r.rows, r.C);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::log_softmax_forward(out.dtype(), out.data_raw(), inp.data_raw(), r.rows, r.C); break;
#endif
    default: throw_unsupported_device(op, r.device);
  }
}

void log_softmax_backward(Tensor& dinp, const Tensor& out, const Tensor& dout) {
  const char* op = "log_softmax_backward";
  Rows r = check_backward(op, dinp, out, dout);
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("out", out).reads("dout", dout).updates("dinp", dinp); c.flops = 3.0 * static_cast<double>(dout.numel()); });
  switch (r.device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::log_softmax_backward(staged.inout(dinp), staged.in(out), staged.in(dout), r.rows, r.C);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::log_softmax_backward(dout.dtype(), dinp.data_raw(), out.data_raw(), dout.data_raw(), r.rows, r.C);
      break;
#endif
    default: throw_unsupported_device(op, r.device);
  }
}

}  // namespace tg::ops
