// The FMA probe behind the CPU's peak FLOP/s (programs/lib/machine_peak.h): independent SIMD FMA
// chains held in registers, at the active instruction-set level's vector width.
#pragma once

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// Runs `iterations` steps of the chains on this thread; returns the FLOPs done (2 per FMA lane).
double fma_chains(long iterations);

TG_CPU_ISA_END
}  // namespace tg::cpu
