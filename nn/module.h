// Module: the parameter and sub-module registry every layer is built on.
//
// A layer registers its parameters and children by name in its constructor and keeps handles to
// them as members (a Tensor is a handle, so the member and the registry see the same data):
//
//   struct Scale : Module {
//     Tensor weight;
//     explicit Scale(int64_t C) { weight = register_parameter("weight", Tensor::ones({C})); }
//     Tensor forward(const Tensor& x) { return tg::mul(x, weight); }
//   };
//
// Names compose with dots in registration order, exactly as PyTorch's state_dict() spells them
// ("h.0.attn.c_attn.weight"), so checkpoints map one-to-one onto a PyTorch model of the same
// structure. Modules are used through std::shared_ptr. There is no virtual forward: each layer
// defines `Tensor forward(const Tensor&)` (or whatever its inputs are) as a plain member, which
// keeps the base class to what every module really shares: names, parameters, train/eval, state.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/safetensors.h"
#include "tensor/tensor.h"

namespace tg {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// What a non-strict load_state_dict skipped.
struct LoadStateDictResult {
  std::vector<std::string> missing;     // in the module, not in the state dict
  std::vector<std::string> unexpected;  // in the state dict, not in the module
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // A module owns tensors that optimizers and children refer to; copying one would silently
  // share or split them, so modules are not copyable.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter, depth-first in registration order (own parameters first, then each child's).
  std::vector<Tensor> parameters() const;
  NamedTensors named_parameters() const;
  // Non-trainable state (running statistics, for example): saved and loaded, never optimized.
  NamedTensors named_buffers() const;
  int64_t num_parameters() const;  // elements over all parameters
  // This module ("") and every descendant ("layer1.0.bn1"), depth-first in registration order.
  std::vector<std::pair<std::string, Module*>> named_modules();

  // Training mode (dropout active) or evaluation mode; propagates to every descendant.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Parameters then buffers, named as above. The tensors share storage with the module (they are
  // detached handles): copy them if you need a snapshot.
  NamedTensors state_dict() const;
  // Copies values into the module's tensors (in place, so optimizers and layers keep their
  // handles). Every entry is checked first, and all problems are reported in one tg::Error naming
  // each missing, unexpected and mismatched entry with its shape; nothing is written unless the
  // whole dict fits. With strict=false, missing and unexpected names are returned instead of
  // thrown; a shape mismatch is always an error. Values of another floating dtype are converted.
  LoadStateDictResult load_state_dict(const NamedTensors& state, bool strict = true);
  LoadStateDictResult load_state_dict(const SafetensorsData& state, bool strict = true);

  // Safetensors checkpoint of state_dict() (atomic write), and strict load of one.
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
  void load(const std::string& path);

  // Moves every parameter and buffer to `device` in place: handles held elsewhere (optimizers,
  // layer members) follow. Gradients are dropped; move before building the optimizer.
  void to(Device device);
  // Converts every floating-point parameter and buffer to `dtype` in place (mixed precision: the
  // model computes in bf16 or f16 while the optimizer keeps f32 master weights, optim/adamw.h).
  // Integer buffers keep their dtype, and so do buffers registered with keep_f32 (statistics that
  // accumulate over steps, such as BatchNorm's running mean and variance). Gradients are dropped;
  // convert before building the optimizer.
  void to(DType dtype);

 protected:
  // Registers a trainable tensor (sets requires_grad) and returns the same handle.
  Tensor register_parameter(const std::string& name, Tensor value);
  // Registers non-trainable state. keep_f32: to(DType) leaves it f32 (it must be f32), for state
  // that accumulates small updates over many steps, which bf16's 8 bits of mantissa would round away.
  Tensor register_buffer(const std::string& name, Tensor value, bool keep_f32 = false);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  void check_new_name(const std::string& name, const char* what) const;
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, bool buffers, NamedTensors& out) const;

  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<bool> buffer_keeps_f32_;  // one per entry of buffers_
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// An indexed list of modules named "0", "1", ... (GPT-2's "h.0", "h.1", ...).
template <class M>
class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<M> module) {
    register_module(std::to_string(items_.size()), module);
    items_.push_back(std::move(module));
  }
  size_t size() const { return items_.size(); }
  M& operator[](size_t i) const { return *items_.at(i); }
  typename std::vector<std::shared_ptr<M>>::const_iterator begin() const { return items_.begin(); }
  typename std::vector<std::shared_ptr<M>>::const_iterator end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

}  // namespace tg
