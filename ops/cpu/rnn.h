// The fused pointwise cells of the recurrent layers: one pass over a step's gates turns the two
// pre-activations (the input projection x_t W_ih^T + b_ih and the recurrent one h W_hh^T + b_hh)
// into the new state, with no intermediate tensor per gate. Gate order is PyTorch's: LSTM i, f, g, o;
// GRU r, z, n. Rows are batch items; each row of a gates tensor holds its gates one after the other
// (the columns of W_ih's output).
//
// Backward kernels ADD into every gradient they are given; a null gradient pointer means that
// input needs none and is skipped.
#pragma once
#include <cstdint>

#include "ops/cpu/isa.h"

namespace tg::cpu {
TG_CPU_ISA_BEGIN

// gates_x, gates_h (B,4H), c_prev (B,H) -> h, c (B,H); gates (B,4H) = the activated i, f, g, o
//   i = sigmoid, f = sigmoid, g = tanh, o = sigmoid of gates_x + gates_h
//   c = f c_prev + i g,  h = o tanh(c)
void lstm_cell_forward(float* h, float* c, float* gates, const float* gates_x, const float* gates_h,
                       const float* c_prev, int64_t B, int64_t H);
// gates (B,4H), c_prev, c, dh, dc (B,H) -> dgates_x, dgates_h (B,4H) += d(pre-activations),
// dc_prev (B,H) += dc_total f, where dc_total = dc + dh o (1 - tanh(c)^2). The two gate
// gradients are the same values (both pre-activations enter the same sum).
void lstm_cell_backward(float* dgates_x, float* dgates_h, float* dc_prev, const float* gates, const float* c_prev,
                        const float* c, const float* dh, const float* dc, int64_t B, int64_t H);

// gates_x, gates_h (B,3H), h_prev (B,H) -> h (B,H); saved (B,4H) = r, z, n and the recurrent
// part of n's pre-activation, h_n = (h W_hn^T + b_hn), which the backward needs and which is
// all it needs of gates_h:
//   r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z), n = tanh(x_n + r h_n),  h = (1 - z) n + z h_prev
void gru_cell_forward(float* h, float* saved, const float* gates_x, const float* gates_h, const float* h_prev,
                      int64_t B, int64_t H);
// saved (B,4H), h_prev, dh (B,H) -> dgates_x, dgates_h (B,3H) += d(pre-activations),
// dh_prev (B,H) += dh z (the direct path; the path through gates_h is the caller's GEMM).
// dgates_h equals dgates_x except in its n block, which is r times it (h_n enters scaled by r).
void gru_cell_backward(float* dgates_x, float* dgates_h, float* dh_prev, const float* saved, const float* h_prev,
                       const float* dh, int64_t B, int64_t H);

TG_CPU_ISA_END
}  // namespace tg::cpu
