#include "nn/rnn.h"

#include <cmath>
#include <string>

#include "autograd/engine.h"
#include "autograd/functions/dropout.h"
#include "autograd/functions/matmul.h"
#include "autograd/functions/rnn.h"
#include "autograd/functions/view.h"
#include "nn/init.h"
#include "ops/accumulate.h"

namespace tg {

namespace {

// parts[k] (all of one shape S) -> one tensor with a new dimension `dim` of size parts.size(),
// parts[k] at index k along it. Each part's gradient is its slice of the output's.
Tensor stack_along(const std::vector<Tensor>& parts, int64_t dim) {
  Shape shape = parts.front().shape();
  shape.insert(shape.begin() + dim, static_cast<int64_t>(parts.size()));
  Tensor out = Tensor::empty(shape, parts.front().dtype(), parts.front().device());
  for (size_t k = 0; k < parts.size(); k++) out.select(dim, static_cast<int64_t>(k)).copy_(parts[k]);
  return record("stack", parts, out, [dim](const Tensor& dout, std::vector<Tensor>& g) {
    for (size_t k = 0; k < g.size(); k++)
      if (g[k].defined()) ops::accumulate(g[k], dout.select(dim, static_cast<int64_t>(k)));
  });
}

// t[index] along dimension 0, as a differentiable view: (N, ...) -> (...).
Tensor step(const Tensor& t, int64_t index) {
  Shape shape(t.shape().begin() + 1, t.shape().end());
  return reshape(slice(t, 0, index, index + 1), shape);
}

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

RecurrentLayers::RecurrentLayers(const char* kind, int64_t gate_count, int64_t input_size, int64_t hidden_size,
                                 int64_t num_layers, bool batch_first, float dropout, bool bias, Generator* gen)
    : kind_(kind),
      input_size_(input_size),
      hidden_size_(hidden_size),
      num_layers_(num_layers),
      batch_first_(batch_first),
      dropout_(dropout) {
  const std::string name = kind;
  TG_CHECK(input_size > 0 && hidden_size > 0, name + ": input_size and hidden_size must be positive, found " +
                                                  str(input_size) + " and " + str(hidden_size));
  TG_CHECK(num_layers > 0, name + ": num_layers must be positive, found " + str(num_layers));
  TG_CHECK(dropout >= 0.0f && dropout < 1.0f, name + ": dropout must be in [0, 1), found " + std::to_string(dropout));
  Generator& g = gen ? *gen : default_generator();
  const float bound = 1.0f / std::sqrt(static_cast<float>(hidden_size));
  auto parameter = [&](const std::string& param_name, const Shape& shape) {
    Tensor p = register_parameter(param_name, Tensor::empty(shape));
    init::uniform_(p, -bound, bound, g);
    return p;
  };
  const int64_t gates = gate_count * hidden_size;
  for (int64_t k = 0; k < num_layers; k++) {
    const std::string l = "_l" + str(k);
    LayerWeights w;
    w.weight_ih = parameter("weight_ih" + l, {gates, k == 0 ? input_size : hidden_size});
    w.weight_hh = parameter("weight_hh" + l, {gates, hidden_size});
    if (bias) {
      w.bias_ih = parameter("bias_ih" + l, {gates});
      w.bias_hh = parameter("bias_hh" + l, {gates});
    }
    layers_.push_back(w);
  }
}

Tensor RecurrentLayers::time_major_input(const Tensor& x) const {
  const std::string name = kind_;
  TG_CHECK(x.defined(), name + ": x is an undefined tensor");
  const char* layout = batch_first_ ? "(B, T, input_size) with batch_first" : "(T, B, input_size)";
  TG_CHECK(x.dim() == 3 && x.size(2) == input_size_,
           name + ": x has shape " + shape_str(x.shape()) + ", expected " + layout + " with input_size " +
               str(input_size_));
  TG_CHECK(x.size(0) > 0 && x.size(1) > 0, name + ": x has shape " + shape_str(x.shape()) +
                                               "; the sequence and the batch must not be empty");
  // Time-major and contiguous, so that each step's rows are one contiguous block of every
  // per-layer tensor (T,B,.) and a step is a view, not a copy.
  return batch_first_ ? contiguous(transpose(x, 0, 1)) : x;
}

void RecurrentLayers::check_state(const Tensor& state, const char* state_name, int64_t batch, const Tensor& x) const {
  if (!state.defined()) return;
  const Shape expected{num_layers_, batch, hidden_size_};
  TG_CHECK(state.shape() == expected, std::string(kind_) + ": " + state_name + " has shape " +
                                          shape_str(state.shape()) + ", expected " + shape_str(expected) +
                                          " (num_layers, batch, hidden_size)");
  TG_CHECK(state.dtype() == x.dtype() && state.device() == x.device(),
           std::string(kind_) + ": " + state_name + " is " + dtype_name(state.dtype()) + " on " +
               state.device().str() + " but x is " + dtype_name(x.dtype()) + " on " + x.device().str());
}

Tensor RecurrentLayers::initial_state(const Tensor& state, int64_t k, int64_t batch, const Tensor& x) const {
  if (!state.defined()) return Tensor::zeros({batch, hidden_size_}, x.dtype(), x.device());
  return step(state, k);
}

Tensor RecurrentLayers::input_gates(const Tensor& inp, int64_t k) const {
  const LayerWeights& w = layers_[static_cast<size_t>(k)];
  return linear(inp, w.weight_ih, w.bias_ih);
}

Tensor RecurrentLayers::recurrent_gates(const Tensor& h, int64_t k) const {
  const LayerWeights& w = layers_[static_cast<size_t>(k)];
  return linear(h, w.weight_hh, w.bias_hh);
}

Tensor RecurrentLayers::between_layers(const Tensor& output, int64_t k) const {
  if (k == num_layers_ - 1 || !is_training() || dropout_ == 0.0f) return output;
  return tg::dropout(output, dropout_, true);
}

Tensor RecurrentLayers::sequence_output(const std::vector<Tensor>& steps) const {
  return stack_along(steps, batch_first_ ? 1 : 0);
}

LSTM::LSTM(int64_t input_size, int64_t hidden_size, int64_t num_layers, bool batch_first, float dropout, bool bias,
           Generator* gen)
    : RecurrentLayers("LSTM", 4, input_size, hidden_size, num_layers, batch_first, dropout, bias, gen) {}

RNNOutput LSTM::forward(const Tensor& x, const Tensor& h0, const Tensor& c0) const {
  Tensor inp = time_major_input(x);
  const int64_t T = inp.size(0), B = inp.size(1);
  check_state(h0, "h0", B, x);
  check_state(c0, "c0", B, x);
  std::vector<Tensor> h_n, c_n, steps(static_cast<size_t>(T));
  for (int64_t k = 0; k < num_layers_; k++) {
    Tensor gates_x = input_gates(inp, k);  // (T,B,4H), every step at once
    Tensor h = initial_state(h0, k, B, x), c = initial_state(c0, k, B, x);
    for (int64_t t = 0; t < T; t++) {
      LSTMCellOutput next = lstm_cell(step(gates_x, t), recurrent_gates(h, k), c);
      h = next.h;
      c = next.c;
      steps[static_cast<size_t>(t)] = h;
    }
    h_n.push_back(h);
    c_n.push_back(c);
    if (k + 1 < num_layers_) inp = between_layers(stack_along(steps, 0), k);
  }
  return {sequence_output(steps), stack_along(h_n, 0), stack_along(c_n, 0)};
}

GRU::GRU(int64_t input_size, int64_t hidden_size, int64_t num_layers, bool batch_first, float dropout, bool bias,
         Generator* gen)
    : RecurrentLayers("GRU", 3, input_size, hidden_size, num_layers, batch_first, dropout, bias, gen) {}

RNNOutput GRU::forward(const Tensor& x, const Tensor& h0, const Tensor& c0) const {
  TG_CHECK(!c0.defined(), "GRU: c0 was given, but a GRU has no cell state (pass h0 only)");
  Tensor inp = time_major_input(x);
  const int64_t T = inp.size(0), B = inp.size(1);
  check_state(h0, "h0", B, x);
  std::vector<Tensor> h_n, steps(static_cast<size_t>(T));
  for (int64_t k = 0; k < num_layers_; k++) {
    Tensor gates_x = input_gates(inp, k);  // (T,B,3H), every step at once
    Tensor h = initial_state(h0, k, B, x);
    for (int64_t t = 0; t < T; t++) {
      h = gru_cell(step(gates_x, t), recurrent_gates(h, k), h);
      steps[static_cast<size_t>(t)] = h;
    }
    h_n.push_back(h);
    if (k + 1 < num_layers_) inp = between_layers(stack_along(steps, 0), k);
  }
  return {sequence_output(steps), stack_along(h_n, 0), Tensor()};
}

}  // namespace tg
