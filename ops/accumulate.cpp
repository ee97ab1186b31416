#include "ops/accumulate.h"

#include <string>

#include "ops/check.h"
#include "ops/f32_staging.h"
#include "ops/profiler.h"
#include "ops/cpu/accumulate.h"
#ifdef TG_CUDA
#include "ops/cuda/accumulate.h"
#endif

namespace tg::ops {

void accumulate(Tensor& dst, const Tensor& src) {
  const char* op = "accumulate";
  check_same_shape(op, dst, "dst", src, "src");
  check_float_or_half_dtype(op, dst, "dst");
  check_same_dtype(op, dst, "dst", src, "src");
  // A 0 stride (an expanded view) would make several elements one, and the kernels' parallel
  // updates of it race: the destination must own each of its elements.
  for (int64_t d = 0; d < dst.dim(); d++)
    if (dst.shape()[d] > 1 && dst.strides()[d] == 0)
      throw Error(std::string(op) + ": dst of shape " + shape_str(dst.shape()) + " has stride 0 in dimension " +
                  std::to_string(d) + "; it must not overlap itself");
  Device device = check_same_device(op, {&dst, &src});
  ProfiledOp profiled(op, [&](OpCost& c) { c.reads("src", src).updates("dst", dst); c.flops = static_cast<double>(src.numel()); });
  switch (device.type) {
    case DeviceType::CPU: {
      F32Staging staged;
      cpu::accumulate_strided(staged.inout(dst), dst.strides(), staged.in(src), src.strides(), src.shape());
      staged.finish();
      break;
    }
#ifdef TG_CUDA
    case DeviceType::CUDA:
      cuda::accumulate_strided(dst.dtype(), dst.data_raw(), dst.strides(), src.data_raw(), src.strides(), src.shape());
      break;
#endif
    default: throw_unsupported_device(op, device);
  }
}

}  // namespace tg::ops
