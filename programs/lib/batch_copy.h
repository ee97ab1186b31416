// A training batch moved to the run's device, which the profiler (ops/profiler.h) records in phase
// "copy" when it is a real host-to-device copy. On the CPU it is the tensor itself, unrecorded.
#pragma once
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace tg {

Tensor batch_to(const Tensor& batch, Device device);

}  // namespace tg
