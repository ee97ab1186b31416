#pragma once
#include <cstdint>
#include <vector>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// dst (shape, element strides dst_strides) += src (shape, element strides src_strides). Strides may
// be permuted or 0 on the source (broadcast); the destination must not alias itself (no 0 strides).
void accumulate_strided(float* dst, const std::vector<int64_t>& dst_strides, const float* src,
                        const std::vector<int64_t>& src_strides, const std::vector<int64_t>& shape);

TG_CPU_ISA_END
}  // namespace tg::cpu
