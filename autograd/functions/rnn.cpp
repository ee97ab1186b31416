#include "autograd/functions/rnn.h"

#include "autograd/engine.h"
#include "ops/check.h"
#include "ops/rnn.h"

namespace tg {

LSTMCellOutput lstm_cell(const Tensor& gates_x, const Tensor& gates_h, const Tensor& c_prev) {
  // The outputs take c_prev's shape and gates_x's; the front then checks that they agree.
  ops::check_defined("lstm_cell", gates_x, "gates_x");
  ops::check_defined("lstm_cell", gates_h, "gates_h");
  ops::check_defined("lstm_cell", c_prev, "c_prev");
  Tensor gx = gates_x.contiguous(), gh = gates_h.contiguous(), cp = c_prev.contiguous();
  Tensor h = Tensor::empty(cp.shape(), gx.dtype(), gx.device());
  Tensor c = Tensor::empty(cp.shape(), gx.dtype(), gx.device());
  Tensor gates = Tensor::empty(gx.shape(), gx.dtype(), gx.device());
  ops::lstm_cell_forward(h, c, gates, gx, gh, cp);
  // The activated gates are saved (one (B,4H) buffer) instead of the two pre-activation inputs;
  // c is the output itself, and tanh(c) is recomputed.
  std::vector<Tensor> out = record("lstm_cell", {gates_x, gates_h, c_prev}, {h, c},
                                   [gates, cp, c](const std::vector<Tensor>& grad_out, std::vector<Tensor>& g) {
                                     ops::lstm_cell_backward(g[0], g[1], g[2], gates, cp, c, grad_out[0], grad_out[1]);
                                   });
  return {out[0], out[1]};
}

Tensor gru_cell(const Tensor& gates_x, const Tensor& gates_h, const Tensor& h_prev) {
  ops::check_dim("gru_cell", h_prev, "h_prev", 2);
  ops::check_defined("gru_cell", gates_x, "gates_x");
  ops::check_defined("gru_cell", gates_h, "gates_h");
  Tensor gx = gates_x.contiguous(), gh = gates_h.contiguous(), hp = h_prev.contiguous();
  Tensor h = Tensor::empty(hp.shape(), gx.dtype(), gx.device());
  // r, z, n and h_n: what the backward needs, so that gates_h itself need not be kept.
  Tensor saved = Tensor::empty({hp.size(0), 4 * hp.size(1)}, gx.dtype(), gx.device());
  ops::gru_cell_forward(h, saved, gx, gh, hp);
  return record("gru_cell", {gates_x, gates_h, h_prev}, h, [saved, hp](const Tensor& dh, std::vector<Tensor>& g) {
    ops::gru_cell_backward(g[0], g[1], g[2], saved, hp, dh);
  });
}

}  // namespace tg
