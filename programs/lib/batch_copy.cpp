#include "programs/lib/batch_copy.h"

#include "ops/profiler.h"

namespace tg {

Tensor batch_to(const Tensor& batch, Device device) {
  if (batch.device() == device) return batch;
  ops::PhaseScope phase(ops::Phase::Copy);
  ops::ProfiledOp profiled("batch_to_device", [&](ops::OpCost& cost) {
    cost.reads("batch", batch);
    cost.device = device;  // timed on the destination (CUDA events when it is a GPU)
    cost.bytes *= 2;       // read on the host, written on the device
  });
  return batch.to(device);
}

}  // namespace tg
