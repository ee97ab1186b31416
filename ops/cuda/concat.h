// CUDA launcher for concatenation (the CUDA side of ops/cpu/concat.h), a byte copy serving every
// dtype: input i, viewed as (outer, run_bytes[i]), fills its columns of the output viewed as
// (outer, sum of run_bytes). Runs on cuda::stream() without synchronizing.
#pragma once
#include <cstdint>
#include <vector>

namespace tg::cuda {

// inputs[i] (outer, run_bytes[i]) -> out (outer, sum of run_bytes)
void concat_forward(void* out, const std::vector<const void*>& inputs, const std::vector<int64_t>& run_bytes,
                    int64_t outer);

}  // namespace tg::cuda
