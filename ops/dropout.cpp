#include "ops/dropout.h"

#include <cmath>
#include <string>

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/dropout.h"
#ifdef TG_CUDA
#include "ops/cuda/dropout.h"
#endif

namespace tg::ops {

void check_dropout_probability(const char* op, float p) {
  // Written so that NaN fails too. p = 1 would drop everything and scale by 1/0.
  if (!(p >= 0.0f && p < 1.0f))
    throw Error(std::string(op) + ": p = " + std::to_string(p) + " is not a dropout probability; expected 0 <= p < 1");
}

void dropout_forward(Tensor& out, const Tensor& inp, float p, uint64_t key) {
  const char* op = "dropout";
  check_dropout_probability(op, p);
  Device device = check_elementwise(op, {{&out, "out"}, {&inp, "inp"}});
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("inp", inp).writes("out", out); c.flops = 2.0 * static_cast<double>(inp.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::dropout_forward(staged.out(out), staged.in(inp), inp.numel(), p, key);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA: cuda::dropout_forward(out.dtype(), out.data_raw(), inp.data_raw(), inp.numel(), p, key); break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

void dropout_backward(Tensor& dinp, const Tensor& dout, float p, uint64_t key) {
  const char* op = "dropout_backward";
  check_dropout_probability(op, p);
  Device device = check_elementwise(op, {{&dinp, "dinp"}, {&dout, "dout"}});
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("dout", dout).updates("dinp", dinp); c.flops = 2.0 * static_cast<double>(dout.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::dropout_backward(staged.inout(dinp), staged.in(dout), dout.numel(), p, key);
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::dropout_backward(dout.dtype(), dinp.data_raw(), dout.data_raw(), dout.numel(), p, key);
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

}  // namespace tg::ops
