// CUDA launcher for dst += src over tensors of one shape and any strides (the CUDA side of
// ops/cpu/accumulate.h): the backward of every view op. Elements of `dtype` (F32, BF16 or F16);
// read, add in f32, round once. Runs on cuda::stream() without synchronizing.
#pragma once
#include <cstdint>
#include <vector>

#include "tensor/dtype.h"

namespace tg::cuda {

// dst (shape, element strides dst_strides) += src (shape, element strides src_strides). The source
// may have 0 strides (broadcast); the destination must not overlap itself (each of its elements is
// written by exactly one thread). Dimensions merge as on the CPU; at most 8 may remain (throws
// otherwise). Both dense: 16-byte accesses when aligned; anything else: a strided walk.
void accumulate_strided(DType dtype, void* dst, const std::vector<int64_t>& dst_strides, const void* src,
                        const std::vector<int64_t>& src_strides, const std::vector<int64_t>& shape);

}  // namespace tg::cuda
