// A training batch taken from the loader and moved to the run's device, which the profiler (ops/profiler.h) records in phase
// "copy" when it is a real host-to-device copy. On the CPU it is the tensor itself, unrecorded.
#pragma once
#include "ops/profiler.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace tg {

// The loader's next batch, recorded by the profiler as op "load_batch" in phase "copy": the time
// the step waits for the prefetch thread and takes the batch. No FLOPs or bytes: the prefetch
// thread assembled the batch, beside the step.
template <class Loader>
auto next_batch(Loader& loader) {
  ops::PhaseScope phase(ops::Phase::Copy);
  ops::ProfiledOp profiled("load_batch", [](ops::OpCost&) {});
  return loader.next();
}

Tensor batch_to(const Tensor& batch, Device device);

}  // namespace tg
