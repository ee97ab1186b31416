#include "ops/accumulate.h"

#include "ops/check.h"
#include "ops/cpu/accumulate.h"

namespace tg::ops {

void accumulate(Tensor& dst, const Tensor& src) {
  const char* op = "accumulate";
  check_same_shape(op, dst, "dst", src, "src");
  check_dtype(op, dst, "dst", DType::F32);
  check_dtype(op, src, "src", DType::F32);
  Device device = check_same_device(op, {&dst, &src});
  switch (device.type) {
    case DeviceType::CPU:
      cpu::accumulate_strided(dst.data<float>(), dst.strides(), src.data<float>(), src.strides(), src.shape());
      break;
    default: throw_unsupported_device(op, device);
  }
}

}  // namespace tg::ops
