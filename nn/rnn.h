// Recurrent layers with PyTorch's semantics and parameter names: LSTM and GRU, stacked
// num_layers deep, time-major (T,B,I) or batch_first (B,T,I), optional initial states, dropout
// between layers.
//
// How a layer runs: the input projection of ALL its timesteps is one GEMM before the time loop,
// (T·B, I) x W_ih^T + b_ih, because it does not depend on the recurrence; each step is then one
// GEMM for the recurrent projection, h W_hh^T + b_hh, and one fused pointwise cell
// (autograd/functions/rnn.h) that turns both into the new state.
//
// Parameters of layer k, as PyTorch names and shapes them (G = 4 for LSTM, 3 for GRU, gate blocks
// in PyTorch's order: LSTM i, f, g, o; GRU r, z, n):
//   weight_ih_l{k} (G·H, I for k = 0, else H), weight_hh_l{k} (G·H, H), bias_ih_l{k}, bias_hh_l{k} (G·H)
// all initialised uniform in +-1/sqrt(H), in that order, layer by layer, from `gen` (the default
// generator when null; `gen` is used only by the constructor). Dropout masks, in training with
// dropout > 0, come from the default generator, as the GPT's do.
#pragma once
#include <cstdint>
#include <vector>

#include "nn/module.h"

namespace tg {

struct RNNOutput {
  Tensor output;  // (T,B,H), or (B,T,H) with batch_first: the last layer's h at every step
  Tensor h_n;     // (num_layers,B,H): each layer's h after the last step
  Tensor c_n;     // (num_layers,B,H): each layer's c after the last step (LSTM); undefined for GRU
};

// What LSTM and GRU share: the hyperparameters, the parameters, the checks of the inputs and
// the time-major view of the sequence.
class RecurrentLayers : public Module {
 public:
  int64_t input_size() const { return input_size_; }
  int64_t hidden_size() const { return hidden_size_; }
  int64_t num_layers() const { return num_layers_; }
  bool batch_first() const { return batch_first_; }
  float dropout() const { return dropout_; }

  struct LayerWeights {
    Tensor weight_ih, weight_hh, bias_ih, bias_hh;  // biases undefined when built with bias = false
  };
  const LayerWeights& layer(int64_t k) const { return layers_.at(static_cast<size_t>(k)); }

 protected:
  RecurrentLayers(const char* kind, int64_t gate_count, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                  bool batch_first, float dropout, bool bias, Generator* gen);

  // x (T,B,I) or (B,T,I) -> (T,B,I) contiguous, checked; `state` (num_layers,B,H) checked when
  // defined, named `state_name` in messages.
  Tensor time_major_input(const Tensor& x) const;
  void check_state(const Tensor& state, const char* state_name, int64_t batch, const Tensor& x) const;
  // Layer k's initial state, (B,H): state[k], or zeros when `state` is undefined.
  Tensor initial_state(const Tensor& state, int64_t k, int64_t batch, const Tensor& x) const;
  // The input projection of every step of layer k: inp (T,B,I_k) -> (T,B,G·H), one GEMM.
  Tensor input_gates(const Tensor& inp, int64_t k) const;
  // The recurrent projection of one step of layer k: h (B,H) -> (B,G·H), one GEMM.
  Tensor recurrent_gates(const Tensor& h, int64_t k) const;
  // Dropout on layer k's output, between layers (not after the last), in training only.
  Tensor between_layers(const Tensor& output, int64_t k) const;
  // steps[t] (B,H) -> (T,B,H), or (B,T,H) with batch_first.
  Tensor sequence_output(const std::vector<Tensor>& steps) const;

  const char* kind_;  // "LSTM" or "GRU", for messages
  int64_t input_size_, hidden_size_, num_layers_;
  bool batch_first_;
  float dropout_;
  std::vector<LayerWeights> layers_;
};

class LSTM : public RecurrentLayers {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, int64_t num_layers = 1, bool batch_first = false, float dropout = 0,
       bool bias = true, Generator* gen = nullptr);

  // x (T,B,I) or (B,T,I); h0, c0 (num_layers,B,H), zeros when omitted (undefined).
  RNNOutput forward(const Tensor& x, const Tensor& h0 = {}, const Tensor& c0 = {}) const;
};

class GRU : public RecurrentLayers {
 public:
  GRU(int64_t input_size, int64_t hidden_size, int64_t num_layers = 1, bool batch_first = false, float dropout = 0,
      bool bias = true, Generator* gen = nullptr);

  // x (T,B,I) or (B,T,I); h0 (num_layers,B,H), zeros when omitted (undefined). A GRU has no cell
  // state: c0 must be undefined, and c_n of the result is.
  RNNOutput forward(const Tensor& x, const Tensor& h0 = {}, const Tensor& c0 = {}) const;
};

}  // namespace tg
