#include "nn/module.h"

#include <set>
#include <unordered_map>

namespace tg {

void Module::check_new_name(const std::string& name, const char* what) const {
  // A dot would make "a.b" ambiguous between a child "a" holding "b" and a tensor named "a.b".
  TG_CHECK(!name.empty() && name.find('.') == std::string::npos,
           std::string("Module::register_") + what + ": name '" + name + "' must be non-empty and contain no '.'");
  bool taken = false;
  for (const auto& entry : parameters_) taken |= entry.first == name;
  for (const auto& entry : buffers_) taken |= entry.first == name;
  for (const auto& entry : children_) taken |= entry.first == name;
  TG_CHECK(!taken, std::string("Module::register_") + what + ": name '" + name + "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name, "parameter");
  TG_CHECK(value.defined(), "Module::register_parameter: '" + name + "' is an undefined tensor");
  TG_CHECK(is_floating(value.dtype()), "Module::register_parameter: '" + name + "' has dtype " +
                                           dtype_name(value.dtype()) + ", expected a floating-point dtype");
  TG_CHECK(value.is_leaf(), "Module::register_parameter: '" + name +
                                "' has autograd history; register a leaf (create it under NoGrad or detach it)");
  value.requires_grad_(true);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value, bool keep_f32) {
  check_new_name(name, "buffer");
  TG_CHECK(value.defined(), "Module::register_buffer: '" + name + "' is an undefined tensor");
  TG_CHECK(!keep_f32 || value.dtype() == DType::F32, "Module::register_buffer: '" + name + "' has dtype " +
                                                         dtype_name(value.dtype()) + ", but keep_f32 needs an f32 tensor");
  buffers_.emplace_back(name, value);
  buffer_keeps_f32_.push_back(keep_f32);
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name, "module");
  TG_CHECK(module != nullptr, "Module::register_module: '" + name + "' is a null module");
  TG_CHECK(module.get() != this, "Module::register_module: '" + name + "' is the module itself");
  module->train(training_);
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool buffers, NamedTensors& out) const {
  for (const auto& [name, tensor] : buffers ? buffers_ : parameters_) out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", buffers, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& entry : named_parameters()) out.push_back(entry.second);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t total = 0;
  for (const auto& entry : named_parameters()) total += entry.second.numel();
  return total;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out = {{"", this}};
  for (auto& [name, child] : children_)
    for (auto& [below, module] : child->named_modules()) out.emplace_back(below.empty() ? name : name + "." + below, module);
  return out;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& entry : children_) entry.second->train(on);
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  for (auto& [name, tensor] : named_parameters()) out.emplace_back(name, tensor.detach());
  for (auto& [name, tensor] : named_buffers()) out.emplace_back(name, tensor.detach());
  return out;
}

// Checks everything, reports everything, then writes: a half-loaded model is worse than none.
static LoadStateDictResult load_into(const NamedTensors& targets, const NamedTensors& state, bool strict,
                                     const std::string& source) {
  std::unordered_map<std::string, const Tensor*> given;
  std::vector<std::string> problems;
  for (const auto& [name, tensor] : state) {
    if (!given.emplace(name, &tensor).second) problems.push_back("duplicate " + name);
  }
  LoadStateDictResult result;
  std::set<std::string> known;
  for (const auto& [name, target] : targets) {
    known.insert(name);
    auto found = given.find(name);
    if (found == given.end()) {
      result.missing.push_back(name);
      if (strict) problems.push_back("missing " + name + " " + shape_str(target.shape()));
      continue;
    }
    const Tensor& value = *found->second;
    if (value.shape() != target.shape()) {
      problems.push_back("shape mismatch " + name + ": module " + shape_str(target.shape()) + ", state dict " +
                         shape_str(value.shape()));
    } else if (is_floating(value.dtype()) != is_floating(target.dtype())) {
      problems.push_back("dtype mismatch " + name + ": module " + dtype_name(target.dtype()) + ", state dict " +
                         dtype_name(value.dtype()));
    }
  }
  for (const auto& [name, tensor] : state) {
    if (known.count(name)) continue;
    result.unexpected.push_back(name);
    if (strict) problems.push_back("unexpected " + name + " " + shape_str(tensor.shape()));
  }
  if (!problems.empty()) {
    std::string message = "load_state_dict" + source + ": the state dict does not fit the module (" +
                          std::to_string(problems.size()) + (problems.size() == 1 ? " problem" : " problems") +
                          "; the module has " + std::to_string(targets.size()) + " entries, the state dict " +
                          std::to_string(state.size()) + ")";
    for (const std::string& problem : problems) message += "\n  " + problem;
    throw Error(message);
  }
  for (const auto& [name, target] : targets) {
    auto found = given.find(name);
    if (found == given.end()) continue;
    Tensor destination = target;  // a handle: copy_ writes the module's own storage
    destination.copy_(*found->second);
  }
  return result;
}

LoadStateDictResult Module::load_state_dict(const NamedTensors& state, bool strict) {
  return load_into(state_dict(), state, strict, "");
}

LoadStateDictResult Module::load_state_dict(const SafetensorsData& state, bool strict) {
  return load_into(state_dict(), state.tensors, strict, state.path.empty() ? "" : " from '" + state.path + "'");
}

void Module::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  save_safetensors(path, state_dict(), metadata);
}

void Module::load(const std::string& path) { load_state_dict(load_safetensors(path), true); }

void Module::to(Device device) {
  NamedTensors owned = named_parameters();  // the registered handles: state_dict()'s are detached copies
  for (auto& entry : named_buffers()) owned.push_back(entry);
  for (auto& [name, tensor] : owned) {
    if (tensor.device() == device) continue;
    Tensor moved = tensor.to(device);
    // Rewrites the shared TensorImpl, not the handle, so every holder of this tensor follows.
    TensorImpl* impl = tensor.impl_ptr();
    impl->storage = moved.storage();
    impl->strides = moved.strides();
    impl->offset = moved.offset();
    impl->grad.reset();
  }
}

// Rewrites the shared TensorImpl, not the handle, so every holder of the tensor follows.
static void convert_in_place(const Tensor& tensor, DType dtype) {
  if (!is_floating(tensor.dtype()) || tensor.dtype() == dtype) return;
  Tensor converted = tensor.to(dtype);
  TensorImpl* impl = tensor.impl_ptr();
  impl->storage = converted.storage();
  impl->strides = converted.strides();
  impl->offset = converted.offset();
  impl->dtype = dtype;
  impl->grad.reset();
}

void Module::to(DType dtype) {
  TG_CHECK(is_floating(dtype), std::string("Module::to: ") + dtype_name(dtype) + " is not a floating-point dtype");
  // Module by module, since keep_f32 is a property of one module's registration. A tensor shared by
  // two modules is converted once: the second sees it already in `dtype`.
  for (auto& entry : parameters_) convert_in_place(entry.second, dtype);
  for (size_t i = 0; i < buffers_.size(); i++)
    if (!buffer_keeps_f32_[i]) convert_in_place(buffers_[i].second, dtype);
  for (auto& entry : children_) entry.second->to(dtype);
}

}  // namespace tg
