// Concatenation as a byte copy (so one kernel serves every dtype): input i, viewed as
// (outer, run_bytes[i]), fills the columns [offset_i, offset_i + run_bytes[i]) of the output viewed
// as (outer, row_bytes), where offset_i is the sum of the runs before it and row_bytes the sum of
// all. For a join along dimension d, outer is the product of the sizes before d and a run is
// size_i(d) times the product of the sizes after d, times the element size.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// inputs[i] (outer, run_bytes[i]) -> out (outer, sum of run_bytes)
void concat_forward(void* out, const std::vector<const void*>& inputs, const std::vector<int64_t>& run_bytes,
                    int64_t outer);

TG_CPU_ISA_END
}  // namespace tg::cpu
