// Differentiable recurrent cells: one time step of an LSTM or a GRU, on the fused kernels of
// ops/rnn.h. The caller computes the two gate pre-activations (the input projection of every step
// as one GEMM before the time loop, the recurrent one per step); the cell does the rest in one pass.
// Gate order is PyTorch's: LSTM i, f, g, o; GRU r, z, n.
#pragma once
#include "tensor/tensor.h"

namespace tg {

struct LSTMCellOutput {
  Tensor h;  // (B,H)
  Tensor c;  // (B,H)
};

// gates_x = x_t W_ih^T + b_ih, gates_h = h_prev W_hh^T + b_hh (B,4H), c_prev (B,H) ->
//   c = sigmoid(f) c_prev + sigmoid(i) tanh(g),  h = sigmoid(o) tanh(c)
// Both outputs carry their own gradient: a loss may use h, c or both.
LSTMCellOutput lstm_cell(const Tensor& gates_x, const Tensor& gates_h, const Tensor& c_prev);

// gates_x = x_t W_ih^T + b_ih, gates_h = h_prev W_hh^T + b_hh (B,3H), h_prev (B,H) -> h (B,H):
//   r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z), n = tanh(x_n + r h_n),  h = (1 - z) n + z h_prev
Tensor gru_cell(const Tensor& gates_x, const Tensor& gates_h, const Tensor& h_prev);

}  // namespace tg
