// Fronts for the fused recurrent cells (ops/cpu/rnn.h has the formulas): one pass per time step
// turns a step's two gate pre-activations into the new state. All tensors contiguous, of one
// dtype (f32 on the CPU; f32, bf16 or f16 on CUDA) and one device.
//
//   gates_x  (B, G·H)  this step's input projection, x_t W_ih^T + b_ih (G = 4 for LSTM, 3 for GRU)
//   gates_h  (B, G·H)  the recurrent projection, h_prev W_hh^T + b_hh
//
// Backward fronts ADD into the gradients; an undefined gradient tensor means that input needs
// none and is skipped.
#pragma once
#include "tensor/tensor.h"

namespace tg::ops {

// gates_x, gates_h (B,4H), c_prev (B,H) -> h, c (B,H) and gates (B,4H), the activated i, f, g, o
// that the backward reads.
void lstm_cell_forward(Tensor& h, Tensor& c, Tensor& gates, const Tensor& gates_x, const Tensor& gates_h,
                       const Tensor& c_prev);
// dh, dc: the gradients of h and c (B,H) -> dgates_x, dgates_h (B,4H), dc_prev (B,H), each added into.
void lstm_cell_backward(Tensor& dgates_x, Tensor& dgates_h, Tensor& dc_prev, const Tensor& gates,
                        const Tensor& c_prev, const Tensor& c, const Tensor& dh, const Tensor& dc);

// gates_x, gates_h (B,3H), h_prev (B,H) -> h (B,H) and saved (B,4H): r, z, n and h_n, what the
// backward reads.
void gru_cell_forward(Tensor& h, Tensor& saved, const Tensor& gates_x, const Tensor& gates_h, const Tensor& h_prev);
// dh (B,H) -> dgates_x, dgates_h (B,3H), dh_prev (B,H) (the direct path z·dh only), each added into.
void gru_cell_backward(Tensor& dgates_x, Tensor& dgates_h, Tensor& dh_prev, const Tensor& saved,
                       const Tensor& h_prev, const Tensor& dh);

}  // namespace tg::ops
