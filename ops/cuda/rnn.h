// CUDA launchers for the fused recurrent cells (the CUDA side of ops/cpu/rnn.h, which states the
// formulas), over tensors of `dtype` (F32, BF16 or F16): load, compute in f32, round once on store.
// Backward launchers ADD into every gradient pointer that is not null (read, add in f32, round);
// a null one is skipped. All run on cuda::stream() without synchronizing.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace tg::cuda {

// gates_x, gates_h (B,4H), c_prev (B,H) -> h, c (B,H), gates (B,4H) = activated i, f, g, o
void lstm_cell_forward(DType dtype, void* h, void* c, void* gates, const void* gates_x, const void* gates_h,
                       const void* c_prev, int64_t B, int64_t H);
// gates (B,4H), c_prev, c, dh, dc (B,H) -> dgates_x, dgates_h (B,4H) +=, dc_prev (B,H) +=
void lstm_cell_backward(DType dtype, void* dgates_x, void* dgates_h, void* dc_prev, const void* gates,
                        const void* c_prev, const void* c, const void* dh, const void* dc, int64_t B, int64_t H);

// gates_x, gates_h (B,3H), h_prev (B,H) -> h (B,H), saved (B,4H) = r, z, n, h_n
void gru_cell_forward(DType dtype, void* h, void* saved, const void* gates_x, const void* gates_h,
                      const void* h_prev, int64_t B, int64_t H);
// saved (B,4H), h_prev, dh (B,H) -> dgates_x, dgates_h (B,3H) +=, dh_prev (B,H) +=
void gru_cell_backward(DType dtype, void* dgates_x, void* dgates_h, void* dh_prev, const void* saved,
                       const void* h_prev, const void* dh, int64_t B, int64_t H);

}  // namespace tg::cuda
