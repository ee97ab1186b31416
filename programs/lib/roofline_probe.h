// The roofs ./train --profile and the planner judge against, measured at the start of the run:
// on the CPU the FMA peak (machine_peak.h, ten times the status line's probe, for a steadier
// figure) and the copy bandwidth of two 256 MB buffers; on a GPU a large GEMM in the run's dtype
// and a 512 MB device copy, with the datasheet figures named beside them.
#pragma once
#include <cstdint>

#include "nn/planner.h"
#include "programs/lib/profile_report.h"
#include "tensor/device.h"
#include "tensor/dtype.h"

namespace tg {

Roofline measure_roofline(Device device, DType dtype, int threads);

// The planner's view of the machine: the roofs, and the fast memory a chunk should stay in (the L2
// of one core on the CPU, read from sysfs; the L2 on a GPU) with the GEMM tile's rows.
PlannerMachine planner_machine(Device device, const Roofline& roof);

}  // namespace tg
